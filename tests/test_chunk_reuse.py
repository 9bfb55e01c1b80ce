"""Tile reads of a chunked array through ChunkReuse: the values Zarr gives, each chunk decoded once."""

import numpy as np
import pytest
import zarr

from gpuseg.axes import AxesView
from gpuseg.chunk_reuse import HOLD_RATIO, ChunkReuse, chunk_shape, reuse_chunks


class Counted:
    """A chunked array that records the regions read from it."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.chunks = array, array.shape, array.dtype, array.chunks
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


@pytest.fixture
def volume(tmp_path):
    data = np.random.default_rng(0).random((7, 50, 45)).astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=data.shape, chunks=(3, 16, 20), dtype="float32")
    z[...] = data
    return data, z


@pytest.mark.parametrize("key", [
    (slice(None),), (slice(2, 6), slice(5, 40), slice(0, 45)), (1, slice(10, 33)), (-1, slice(None), 44),
    (slice(0, 7), slice(30, 80), slice(-20, None)), (slice(4, 4),), (slice(None), slice(49, 50), slice(19, 21)),
    (slice(None, None, 2),), (0, 0, 0), (Ellipsis, 3)])
def test_reads_equal_zarrs(volume, key):
    data, z = volume
    reader = ChunkReuse(z)
    for _ in range(2):  # from the array, then from the chunks the first read kept
        got = reader[key]
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(got, data[key])


def test_out_of_range_integers_raise_as_the_array_does(volume):
    _, z = volume
    with pytest.raises(IndexError):
        ChunkReuse(z)[7]


def test_tiles_read_in_order_decode_each_chunk_once(volume):
    data, z = volume
    counted = Counted(z)
    reader = ChunkReuse(counted)
    halo = 5
    for r0 in range(0, 50, 16):  # row bands with their halo: each reaches into the chunks above and below
        key = (slice(None), slice(max(0, r0 - halo), min(50, r0 + 16 + halo)), slice(None))
        np.testing.assert_array_equal(reader[key], data[key])
    boxes = [tuple((s.start, s.stop) for s in key) for key in counted.reads]
    assert len(boxes) == len(set(boxes)) == 3 * 4 * 3  # every chunk once: 3 x 4 x 3 chunks


def test_a_region_much_smaller_than_its_chunks_is_read_straight_through(volume):
    data, z = volume
    counted = Counted(z)
    reader = ChunkReuse(counted)
    key = (0, slice(0, 2), slice(0, 2))  # 4 values of a 3 x 16 x 20 chunk
    assert 3 * 16 * 20 > HOLD_RATIO * 4
    np.testing.assert_array_equal(reader[key], data[key])
    assert counted.reads == [key] and reader._held == {}


def test_reuse_chunks_wraps_chunked_arrays_only(volume):
    data, z = volume
    assert reuse_chunks(data) is data
    assert isinstance(reuse_chunks(z), ChunkReuse)
    view = AxesView(z, "ZYX", "YX", {"Z": 2})
    wrapped = reuse_chunks(view)
    assert isinstance(wrapped, AxesView) and isinstance(wrapped.array, ChunkReuse)
    np.testing.assert_array_equal(wrapped[10:30, 5:25], data[2, 10:30, 5:25])
    assert reuse_chunks(AxesView(data, "ZYX", "YX", {"Z": 2})).array is data
    dask = pytest.importorskip("dask.array")
    lazy = dask.from_array(data, chunks=(3, 16, 20))
    assert chunk_shape(lazy) is None and reuse_chunks(lazy) is lazy  # its chunks are per-axis tuples
    with pytest.raises(TypeError, match="regular chunks"):
        ChunkReuse(data)
