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
