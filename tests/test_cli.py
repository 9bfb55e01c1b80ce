import dataclasses
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

import gpuseg
from gpuseg.cli import main
from gpuseg.features import PRESETS


@pytest.fixture
def files(tmp_path, mosaic):
    image, truth, scribbles = mosaic
    iio.imwrite(tmp_path / "img.png", image)
    tifffile.imwrite(tmp_path / "img.tif", image)
    np.save(tmp_path / "img.npy", image)
    iio.imwrite(tmp_path / "scribbles.png", scribbles)
    return tmp_path


def test_train_predict_round_trip(files, mosaic, capsys):
    model = files / "model.gpuseg"
    assert main(["train", str(files / "img.png"), str(files / "scribbles.png"), "-o", str(model),
                 "--sigma-max", "4", "--n-estimators", "8", "--random-state", "0", "--backend", "cpu"]) == 0
    assert "classes [1, 2, 3]" in capsys.readouterr().out
    seg = gpuseg.load(model)
    expected = seg.predict(mosaic[0])
    for src, dst in [("img.tif", "out.tif"), ("img.npy", "out.npy"), ("img.png", "out.png")]:
        assert main(["predict", str(model), str(files / src), "-o", str(files / dst), "--backend", "cpu"]) == 0
        got = tifffile.imread(files / dst) if dst.endswith("tif") else (
            np.load(files / dst) if dst.endswith("npy") else iio.imread(files / dst))
        np.testing.assert_array_equal(got, expected)


def test_predict_many_into_folder_and_proba(files, small_model):
    model = small_model.save(files / "m.gpuseg")
    series = files / "series"
    series.mkdir()
    for t in range(3):
        np.save(series / f"t{t}.npy", np.roll(np.load(files / "img.npy"), 5 * t, axis=1))
    assert main(["predict", str(model), str(series), "-o", str(files / "out"), "--proba"]) == 0
    outs = sorted(p.name for p in (files / "out").iterdir())
    assert outs == ["t0_proba.tif", "t1_proba.tif", "t2_proba.tif"]
    proba = tifffile.imread(files / "out" / "t1_proba.tif")
    assert proba.dtype == np.float32 and np.allclose(proba.sum(axis=proba.shape.index(3)), 1, atol=1e-5)


def test_errors_are_messages_not_tracebacks(files, capsys):
    (files / "bad.gpuseg").write_text("nope")
    assert main(["predict", str(files / "bad.gpuseg"), str(files / "img.npy"), "-o", str(files / "o.npy")]) == 2
    err = capsys.readouterr().err
    assert "not a gpuseg model file" in err and "Traceback" not in err
    assert main(["train", str(files / "img.png"), "-o", str(files / "m.gpuseg")]) == 2
    assert "pairs" in capsys.readouterr().err


def test_info_and_console_script():
    out = subprocess.run([sys.executable, "-m", "gpuseg.cli", "info"], capture_output=True, text=True, check=True).stdout
    assert "gpuseg" in out and "backends: cpu" in out and "GPU:" in out


def test_demo_writes_its_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--size", "256", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    demo = tmp_path / "gpuseg-demo"
    for name in ["labels.tif", "overlay.png", "scribbles.png", "model.gpuseg"]:
        assert (demo / name).is_file() and name in out
    assert "CPU backend" in out and "accuracy" in out
    labels = tifffile.imread(demo / "labels.tif")
    assert labels.shape == (256, 256)
    np.testing.assert_array_equal(gpuseg.load(demo / "model.gpuseg").classes_, [1, 2, 3])
    assert iio.imread(demo / "overlay.png").shape == (256, 256, 3)


def test_train_with_a_preset_and_spacing_from_imagej_metadata(tmp_path, rng, capsys):
    volume = rng.random((6, 24, 24), dtype=np.float32)
    scribbles = np.zeros(volume.shape, np.uint8)
    scribbles[2, 2:6, 2:12], scribbles[3, 15:20, 10:20] = 1, 2
    tifffile.imwrite(tmp_path / "stack.tif", volume, imagej=True, metadata={"spacing": 3.0, "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "scribbles.tif", scribbles)
    model = tmp_path / "model.gpuseg"
    assert main(["train", str(tmp_path / "stack.tif"), str(tmp_path / "scribbles.tif"), "-o", str(model),
                 "--preset", "ilastik", "--n-estimators", "4", "--backend", "cpu"]) == 0
    assert "spacing (3.0, 1.0, 1.0)" in capsys.readouterr().out
    seg = gpuseg.load(model)
    assert seg.feature_params == dataclasses.replace(PRESETS["ilastik"], spacing=(3.0, 1.0, 1.0))


def _predict(*args):
    return main(["predict", *map(str, args), "--backend", "cpu"])


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".png"])
def test_output_over_the_input_is_refused(files, small_model, capsys, suffix):
    model = small_model.save(files / "m.gpuseg")
    src = files / f"img{suffix}"
    before = src.read_bytes()
    assert _predict(model, src, "-o", src) == 2
    assert "the same path as the input" in capsys.readouterr().err and src.read_bytes() == before


def test_zarr_output_over_inside_or_around_inputs_is_refused(files, small_model, capsys):
    import zarr

    model = small_model.save(files / "m.gpuseg")
    src = files / "in.zarr"
    zarr.create_array(store=str(src), data=np.load(files / "img.npy"), chunks=(64, 64))
    for out, relation in [(src, "the same path as"), (src / "labels.zarr", "inside")]:
        assert _predict(model, src, "-o", out, "--overwrite") == 2
        err = capsys.readouterr().err
        assert relation in err and len(err.strip().splitlines()) == 1
    np.testing.assert_array_equal(zarr.open(str(src), mode="r")[:], np.load(files / "img.npy"))
    (files / "wrap.zarr").mkdir()  # an output --overwrite would delete, holding an input
    np.save(files / "wrap.zarr" / "img.npy", np.load(files / "img.npy"))
    assert _predict(model, files / "wrap.zarr" / "img.npy", "-o", files / "wrap.zarr", "--overwrite") == 2
    assert "a folder holding the input" in capsys.readouterr().err
    assert (files / "wrap.zarr" / "img.npy").is_file()


def test_inputs_with_the_same_stem_are_refused_before_writing(files, small_model, capsys):
    model = small_model.save(files / "m.gpuseg")
    for day in ("day1", "day2"):
        (files / day).mkdir()
        np.save(files / day / "frame.npy", np.load(files / "img.npy"))
    assert _predict(model, files / "day1", files / "day2", "-o", files / "out") == 2
    assert "would both be written to" in capsys.readouterr().err
    assert not (files / "out").exists()


@pytest.mark.parametrize("tile", [["0"], ["8", "8", "8"], ["-4", "8"]])
def test_bad_tiles_are_refused_before_anything_is_created(files, small_model, capsys, tile):
    model = small_model.save(files / "m.gpuseg")
    out = files / "out.zarr"
    assert _predict(model, files / "img.npy", "-o", out, "--tile", *tile) == 2
    assert "tile" in capsys.readouterr().err.lower()
    assert sorted(p.name for p in files.iterdir()) == sorted(["img.png", "img.tif", "img.npy", "scribbles.png",
                                                              "m.gpuseg"])


def _one_line_error(capsys, *words):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("gpuseg predict: error:"), err
    for w in words:
        assert w in err, err
    return err


def test_unreadable_inputs_are_one_line_messages(files, small_model, capsys):
    import zarr

    model = small_model.save(files / "m.gpuseg")
    (files / "empty.npy").write_bytes(b"")
    (files / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    zarr.create_array(store=str(files / "broken.zarr"), shape=(32, 32), dtype="u1", chunks=(16, 16))
    (files / "broken.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array", "shape": [3')
    for name in ("empty.npy", "bad.png", "broken.zarr"):
        assert _predict(model, files / name, "-o", files / "out.npy") == 2
        _one_line_error(capsys, "Cannot read", name)
    assert not (files / "out.npy").exists()


def test_png_bomb_is_refused(files, small_model, capsys):
    import zlib
    import struct

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 20_000  # 400 megapixels, a few hundred kilobytes compressed
    row = b"\x00" + bytes(side)
    body = zlib.compressobj(9)
    idat = b"".join(body.compress(row) for _ in range(side)) + body.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    (files / "bomb.png").write_bytes(png)
    model = small_model.save(files / "m.gpuseg")
    assert _predict(model, files / "bomb.png", "-o", files / "out.npy") == 2
    _one_line_error(capsys, "bomb.png")


def test_permission_errors_are_one_line_messages(files, small_model, capsys, monkeypatch):
    model = small_model.save(files / "m.gpuseg")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(np, "load", denied)  # root may read anything: simulate the denial
    assert _predict(model, files / "img.npy", "-o", files / "out.tif") == 2
    _one_line_error(capsys, "Permission denied", "img.npy")


def test_a_whole_image_output_larger_than_memory_is_refused(files, small_model, capsys):
    import zarr

    model = small_model.save(files / "m.gpuseg")
    zarr.create_array(store=str(files / "huge.zarr"), shape=(2**20, 2**20), dtype="u1", chunks=(4096, 4096))
    start = __import__("time").perf_counter()
    assert _predict(model, files / "huge.zarr", "-o", files / "out.npy") == 2
    _one_line_error(capsys, "1024.0 GiB", ".zarr output")
    assert __import__("time").perf_counter() - start < 30


def test_single_strip_tiff_too_large_to_read_whole_is_refused(files, small_model, capsys, monkeypatch, mosaic):
    import gpuseg.image_io

    monkeypatch.setattr(gpuseg.image_io, "TIFF_IN_MEMORY_BYTES", 16 * 1024)  # the 192x192 sample is 36 KiB
    monkeypatch.setattr(gpuseg.image_io, "TIFF_STRIP_BYTES", 4 * 1024)
    model = small_model.save(files / "m.gpuseg")
    tifffile.imwrite(files / "strip.tif", mosaic[0], rowsperstrip=192, compression="zlib")
    assert _predict(model, files / "strip.tif", "-o", files / "out.npy") == 2
    _one_line_error(capsys, "strips of", "tile=(512, 512)")
    tifffile.imwrite(files / "strips.tif", mosaic[0], rowsperstrip=16, compression="zlib")  # 3 KiB strips: fine
    assert _predict(model, files / "strips.tif", "-o", files / "out.npy") == 0
    np.testing.assert_array_equal(np.load(files / "out.npy"), small_model.predict(mosaic[0]))
