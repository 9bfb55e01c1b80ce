"""Tiled prediction equals whole-image prediction, whatever the tiles."""

import math

import numpy as np
import pytest

from gpuseg import Segmenter
from gpuseg.tiling import Block, blocks, chunks_per_block, default_tile_shape, iter_tiles

SIGMA_MAX = 4  # halo 18


def _scene(shape, rng):
    """A noisy image with a brighter half and a blob, and scribbles of three classes."""
    image = rng.normal(0, 0.3, shape).astype(np.float32)
    image[..., shape[-1] // 2:] += 1
    centre = tuple(slice(s // 3, s // 3 + max(2, s // 6)) for s in shape)
    image[centre] += 2
    labels = np.zeros(shape, np.uint8)
    labels[(slice(1, 4),) * (len(shape) - 1) + (slice(2, shape[-1] // 3),)] = 1
    labels[(slice(-4, -1),) * (len(shape) - 1) + (slice(-shape[-1] // 3, -2),)] = 2
    labels[centre] = 3
    return image, labels


def _model(image, labels, channel_axis=None, sigma_max=SIGMA_MAX):
    return Segmenter(backend="cpu", sigma_max=sigma_max, n_estimators=10, max_depth=8, random_state=0,
                     channel_axis=channel_axis).fit(image, labels)


@pytest.fixture(scope="module")
def case_2d():
    image, labels = _scene((64, 80), np.random.default_rng(0))
    return _model(image, labels), image


@pytest.fixture(scope="module")
def case_3d():
    image, labels = _scene((16, 30, 28), np.random.default_rng(1))
    return _model(image, labels, sigma_max=2), image  # halo 10


@pytest.fixture(scope="module", params=[0, -1])
def case_channels(request):
    rng = np.random.default_rng(2)
    image, labels = _scene((70, 64), rng)
    stacked = np.stack([image, rng.normal(0, 1, image.shape).astype(np.float32)], axis=request.param)
    return _model(stacked, labels, channel_axis=request.param), stacked


def _assert_tiled_equals_whole(seg, image, tile_shape):
    whole_proba = seg.predict_proba(image, progress=False)
    whole_labels = seg.classes_[whole_proba.argmax(axis=-1)]
    tiled_labels = seg.predict(image, tile_shape=tile_shape, progress=False)
    tiled_proba = seg.predict_proba(image, tile_shape=tile_shape, progress=False)
    assert len(np.unique(whole_labels)) > 1
    np.testing.assert_array_equal(tiled_labels, whole_labels)
    np.testing.assert_allclose(tiled_proba, whole_proba, rtol=0, atol=1e-6)


# tiles: even, odd, smaller than the halo (18), one pixel thin, larger than the image
TILES_2D = [(32, 32), (31, 47), (5, 7), (1, 80), (500, 500)]


@pytest.mark.parametrize("tile_shape", TILES_2D)
def test_tiled_equals_whole_2d(case_2d, tile_shape):
    _assert_tiled_equals_whole(*case_2d, tile_shape)


@pytest.mark.parametrize("tile_shape", [(5, 16, 13), (16, 4, 28), (64, 64, 64)])
def test_tiled_equals_whole_3d(case_3d, tile_shape):
    _assert_tiled_equals_whole(*case_3d, tile_shape)


@pytest.mark.parametrize("tile_shape", [(23, 17), (9, 64)])
def test_tiled_equals_whole_multichannel(case_channels, tile_shape):
    _assert_tiled_equals_whole(*case_channels, tile_shape)


@pytest.mark.parametrize("shape", [(50, 37), (9, 20, 31)])
@pytest.mark.parametrize("halo", [0, 4, 30])
def test_iter_tiles_cover_the_image_once(shape, halo):
    tile_shape = tuple(max(1, s // 3) for s in shape)
    count = np.zeros(shape, np.int64)
    for tile in iter_tiles(shape, tile_shape, halo):
        count[tile.write] += 1
        for read, crop, write, size in zip(tile.read, tile.crop, tile.write, shape):
            assert read.start == max(0, write.start - halo) and read.stop == min(size, write.stop + halo)
            assert (read.start + crop.start, read.start + crop.stop) == (write.start, write.stop)
    np.testing.assert_array_equal(count, 1)


@pytest.mark.parametrize("shape", [(4000, 3000), (300, 2000, 2000), (50, 60)])
def test_default_tile_shape_fits_the_budget(shape):
    n_features, halo, budget = 40, 18, 64 * 2**20
    tile = default_tile_shape(shape, n_features, halo, budget)
    pixels = math.prod(min(s, t + 2 * halo) for s, t in zip(shape, tile))  # a tile's read block
    assert pixels * 4 * (n_features + 10) <= budget or tile == shape
    assert all(1 <= t <= s for t, s in zip(tile, shape))


def test_default_tile_is_the_whole_image_when_the_halo_spans_it():
    """A 128^3 volume with sigma 16 (halo 66): every tile would read the whole volume, so one tile."""
    assert default_tile_shape((128, 128, 128), 30, 66, 2**30) == (128, 128, 128)
    # ... and an axis the halo spans stays whole while a long one is cut
    tile = default_tile_shape((100, 20000), 24, 66, 64 * 2**20)
    assert tile[0] == 100 and tile[1] < 20000


def test_tiles_are_made_lazily_for_any_image_size():
    """A 2**40 x 2**40 grid: counted and indexed at once, never listed (a list would need terabytes)."""
    import tracemalloc

    tracemalloc.start()
    tiles = iter_tiles((2**40, 2**40), (4096, 4096), 34)
    first, last = next(iter(tiles)), tiles[-1]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(tiles) == (2**28) ** 2 and peak < 2**20
    assert first.write == (slice(0, 4096), slice(0, 4096)) and first.read == (slice(0, 4096 + 34),) * 2
    assert last.write == (slice(2**40 - 4096, 2**40),) * 2 and last.crop == (slice(34, 34 + 4096),) * 2


def test_tile_grid_matches_itertools_order():
    import itertools

    shape, tile, halo = (10, 7, 5), (4, 3, 5), 2
    tiles = iter_tiles(shape, tile, halo)
    starts = list(itertools.product(*(range(0, s, t) for s, t in zip(shape, tile))))
    assert [tuple(w.start for w in t.write) for t in tiles] == starts
    assert [t.write for t in tiles] == [tiles[i].write for i in range(len(tiles))]


@pytest.mark.parametrize("shape, chunk, per_block", [((50, 37), (8, 5), (3, 2)), ((9, 20, 31), (2, 6, 31), (2, 2, 1))])
@pytest.mark.parametrize("halo", [0, 7])
def test_blocks_group_whole_chunks(shape, chunk, per_block, halo):
    """Every chunk is in one block, a block's region is its chunks' box, read with the halo as a tile is."""
    grid = iter_tiles(shape, chunk, halo)
    seen = []
    for block in blocks(grid, per_block):
        assert isinstance(block, Block)
        for read, crop, write, size in zip(block.read, block.crop, block.write, shape):
            assert read.start == max(0, write.start - halo) and read.stop == min(size, write.stop + halo)
            assert (read.start + crop.start, read.start + crop.stop) == (write.start, write.stop)
        assert all(c.write[a].start >= block.write[a].start and c.write[a].stop <= block.write[a].stop
                   for c in block.chunks for a in range(len(shape)))
        assert sum(math.prod(c.shape) for c in block.chunks) == math.prod(block.shape)
        assert all(b <= k * c for b, k, c in zip(block.shape, per_block, chunk))
        seen += [c.write for c in block.chunks]
    assert sorted(seen) == sorted(t.write for t in grid)


def test_blocks_keep_only_the_chunks_asked_for():
    """A block covers the box of the chunks kept in it; one with none kept is left out."""
    grid = iter_tiles((40, 40), (10, 10), 3)
    keep = {(1, 2), (1, 3), (2, 3)}  # chunk positions; all in the block of chunks (0..1, 2..3) but (2, 3)
    found = list(blocks(grid, (2, 2), keep=lambda t: (t.write[0].start // 10, t.write[1].start // 10) in keep))
    assert [b.write for b in found] == [(slice(10, 20), slice(20, 40)), (slice(20, 30), slice(30, 40))]
    assert [[c.write for c in b.chunks] for b in found] == [[grid.at((1, 2)).write, grid.at((1, 3)).write],
                                                            [grid.at((2, 3)).write]]
    assert found[0].read == (slice(7, 23), slice(17, 40)) and found[0].crop == (slice(3, 13), slice(3, 23))


@pytest.mark.parametrize("counts, chunk, tile, expected", [
    ((4, 4), (1024, 1024), (2048, 2048), (2, 2)),  # 4096^2 in 1024^2 chunks, the in-memory tiles of 2048^2
    ((8, 8), (512, 512), (2048, 2048), (4, 4)),
    ((2, 2), (4096, 4096), (2048, 2048), (1, 1)),  # chunks larger than the tile: one each
    ((5, 7), (100, 100), (250, 600), (2, 4)),  # at most 2 and 6 per block; 3 and 2 blocks share them out evenly
])
def test_chunks_per_block(counts, chunk, tile, expected):
    assert chunks_per_block(counts, chunk, tile) == expected
