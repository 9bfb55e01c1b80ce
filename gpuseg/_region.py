"""Regions of a filter's output: a box of the input, given as slices, and the arrays that receive it.

A tile's derivative features are needed on its core only, not on the halo
that the smoothing reads, so the derivative filters (``sobel``,
``hessian_eigenvalues`` of both backends) take a ``region`` of their input and
write its values into ``out``: the CPU kernels compute the box alone, straight
into the caller's feature matrix (no whole-block image, no copy); the GPU
backend crops its library's whole result. Neither imports an array library here.
"""

from __future__ import annotations


def box(region, shape: tuple) -> tuple:
    """Origin and shape of ``region`` in an array of ``shape``.

    Parameters
    ----------
    region : tuple of slice, or None
        One slice per axis, step 1 (``None``: the whole array).
    shape : tuple of int

    Returns
    -------
    origin, size : tuple of int, tuple of int

    Raises
    ------
    ValueError
        Not one slice per axis, a step other than 1, or an empty box.
    """
    if region is None:
        return (0,) * len(shape), tuple(shape)
    if len(region) != len(shape) or not all(isinstance(s, slice) for s in region):
        raise ValueError(f"region must be one slice per axis of an array of shape {shape}, got {region!r}.")
    bounds = [s.indices(n) for s, n in zip(region, shape)]
    if any(step != 1 or stop <= start for start, stop, step in bounds):
        raise ValueError(f"region must be a non-empty box with step 1 in shape {shape}, got {region!r}.")
    return tuple(b[0] for b in bounds), tuple(b[1] - b[0] for b in bounds)


def outputs(out, n: int, size: tuple, empty) -> list:
    """``n`` arrays of shape ``size`` for a filter's results: ``out``'s, checked, or new ones from ``empty``.

    Parameters
    ----------
    out : array, sequence of ``n`` arrays, or None
        An array when ``n`` is 1.
    n : int
    size : tuple of int
    empty : callable ``shape -> float32 array``

    Raises
    ------
    ValueError
        Not ``n`` arrays, or one whose shape is not ``size``.
    """
    if out is None:
        return [empty(size) for _ in range(n)]
    arrays = [out] if n == 1 and hasattr(out, "shape") else list(out)
    if len(arrays) != n or any(tuple(a.shape) != tuple(size) for a in arrays):
        raise ValueError(f"out must be {n} array(s) of shape {size} (the region's), got "
                         f"{[tuple(a.shape) for a in arrays]}.")
    return arrays


def store(results: list, region, out) -> list:
    """The ``region`` of each whole-input result, in ``out``'s arrays when given (a backend that filters whole arrays).

    Parameters
    ----------
    results : list of arrays of one shape
    region : tuple of slice, or None
    out : array, sequence of arrays, or None
        As :func:`outputs` takes it.

    Returns
    -------
    list of arrays of the region's shape: views of ``results`` without ``out``.
    """
    box(region, results[0].shape)  # the same checks as the CPU kernels'
    crops = [r if region is None else r[tuple(region)] for r in results]
    if out is None:
        return crops
    arrays = outputs(out, len(results), crops[0].shape, None)
    for a, c in zip(arrays, crops):
        a[...] = c
    return arrays
