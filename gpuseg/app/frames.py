"""The image a session works on: its frames (the time points of a time-lapse), channels last.

A still image is one frame. Each frame is one image for :class:`gpuseg.Segmenter`
(2D or 3D, with all its channels), so the features of each frame are computed,
and cached, on their own (:meth:`Frames.key`), and a frame's picture shows one
channel or a composite of the first three (:meth:`Frames.picture`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .display import channel_limits, picture


class Frames:
    """One or more frames of the same shape.

    Parameters
    ----------
    data : ndarray of shape ``(n_frames,) + spatial_shape + (n_channels,)``
        ``spatial_shape`` is ``(rows, cols)`` or ``(planes, rows, cols)``.
    rgb : bool
        The three channels are a colour picture's red, green and blue: it is shown in its
        colours and offers no choice of channel.

    Raises
    ------
    ValueError
        ``data`` of another number of dimensions.
    """

    def __init__(self, data: np.ndarray, rgb: bool = False):
        if data.ndim not in (4, 5):
            raise ValueError(f"Frames are (n_frames,) + 2D or 3D + (n_channels,); got shape {data.shape}.")
        self.data, self.rgb = data, bool(rgb)
        self._keys: dict = {}
        self._limits = None

    @property
    def n_frames(self) -> int:
        return self.data.shape[0]

    @property
    def spatial_shape(self) -> tuple:
        """``(rows, cols)`` or ``(planes, rows, cols)`` of one frame."""
        return self.data.shape[1:-1]

    @property
    def n_planes(self) -> int:
        return self.spatial_shape[0] if len(self.spatial_shape) == 3 else 1

    @property
    def n_channels(self) -> int:
        return self.data.shape[-1]

    @property
    def channel_axis(self) -> int | None:
        """The Segmenter's ``channel_axis`` for :meth:`frame`: -1, or None for one channel."""
        return -1 if self.n_channels > 1 else None

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as :class:`gpuseg.Segmenter` takes it with :attr:`channel_axis`: of shape
        ``spatial_shape + (n_channels,)``, or ``spatial_shape`` for one channel."""
        return self.data[t] if self.n_channels > 1 else self.data[t, ..., 0]

    def key(self, t: int) -> tuple:
        """What frame ``t``'s features are cached under: a digest of its pixels, its shape and dtype."""
        if t not in self._keys:
            frame = np.ascontiguousarray(self.data[t])
            self._keys[t] = (hashlib.blake2b(frame.data, digest_size=16).hexdigest(), frame.shape, str(frame.dtype))
        return self._keys[t]

    @property
    def channel_choice(self) -> bool:
        """Whether the display offers a choice of channel: more than one channel, and not an RGB picture."""
        return self.n_channels > 1 and not self.rgb

    def picture(self, t: int, z: int, channel: int | None, scale: int) -> np.ndarray:
        """RGB uint8 picture of plane ``z`` of frame ``t``: see :func:`gpuseg.app.display.picture`.

        Every plane of every frame is scaled to uint8 with the same range per channel (the whole
        image's minimum and maximum; see :func:`gpuseg.app.display.channel_limits`).
        """
        if self._limits is None:
            self._limits = channel_limits(self.data, self.rgb)
        plane = self.data[t, z] if len(self.spatial_shape) == 3 else self.data[t]
        return picture(plane, self._limits, channel, scale)
