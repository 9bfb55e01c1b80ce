"""Physical pixel sizes read from files (gpuseg.metadata) and used by `gpuseg train`."""

import numpy as np
import pytest
import tifffile
import zarr

from gpuseg.metadata import read_spacing


def test_imagej_tiff(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 20, 30), np.uint8), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    assert read_spacing(path, 3) == (2.0, 0.5, 0.5)
    assert read_spacing(path, 2) == (0.5, 0.5)


def test_ome_tiff(tmp_path):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, np.zeros((5, 20, 30), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5})
    assert read_spacing(path, 3) == (1.5, 0.25, 0.25)


def test_ome_zarr(tmp_path):
    path = tmp_path / "image.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=(4, 16, 16), dtype="uint8")
    group.attrs["multiscales"] = [{"axes": [{"name": n, "type": "space"} for n in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [3.0, 0.5, 0.5]}]}]}]
    assert read_spacing(path, 3) == (3.0, 0.5, 0.5)


@pytest.mark.parametrize("name", ["plain.tif", "image.npy"])
def test_no_sizes_is_none(tmp_path, name):
    path = tmp_path / name
    (tifffile.imwrite if name.endswith(".tif") else np.save)(path, np.zeros((5, 20, 30), np.uint8))
    assert read_spacing(path, 3) is None
