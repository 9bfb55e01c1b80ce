"""Feature matrices of whole tiles, kept from training for the prediction of the same image.

:meth:`gpuseg.Segmenter.fit_predict` trains on an image's scribbles and then
classifies every pixel of that image: the tiles that hold scribbles have their
features computed in both steps. With a :class:`TileCache`, training computes
each such tile's whole feature matrix once, takes the labelled rows from it and
keeps it, within a byte budget (and the last labelled tile's, which is the
training's feature buffer itself, beyond it); prediction then classifies the
kept tiles first, each from its matrix, and drops them. The matrices are the ones prediction would compute (the
same block, the same filters), so the labels are the same.
"""

from __future__ import annotations

from .tiling import Tile


class TileCache:
    """Feature-major matrices of tiles, keyed by where the tile is written, within ``budget_bytes``.

    Parameters
    ----------
    budget_bytes : float
        Most bytes the kept matrices may hold together; a tile that would
        exceed it is not kept (prediction computes it again).
    """

    def __init__(self, budget_bytes: float):
        self.budget_bytes = float(budget_bytes)
        self.held_bytes = 0
        self._matrices = {}

    @staticmethod
    def _key(tile: Tile) -> tuple:
        return tuple((s.start, s.stop) for s in tile.write)

    def __len__(self) -> int:
        return len(self._matrices)

    def has_room(self, nbytes: int) -> bool:
        """Whether a matrix of ``nbytes`` fits beside those held."""
        return self.held_bytes + nbytes <= self.budget_bytes

    def holds(self, tile: Tile) -> bool:
        """Whether a matrix of ``tile`` is kept."""
        return self._key(tile) in self._matrices

    def put(self, tile: Tile, X) -> None:
        """Keep ``X``, of shape ``(n_features, prod(tile.shape))``, the features of ``tile``."""
        self._matrices[self._key(tile)] = X
        self.held_bytes += X.nbytes

    def pop(self, tile: Tile):
        """The matrix kept for ``tile``, no longer held, or ``None``."""
        X = self._matrices.pop(self._key(tile), None)
        if X is not None:
            self.held_bytes -= X.nbytes
        return X
