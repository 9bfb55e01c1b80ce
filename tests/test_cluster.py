"""Predicting into Zarr on a 2-process Dask LocalCluster: equal to one process, resumed after kills, URLs."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import gpuseg
from gpuseg.cli import main
from gpuseg.stream import DONE_DIR, predict_to_zarr

distributed = pytest.importorskip("distributed")

TILE = (16, 16)
N_TILES = 12 * 12  # the 192x192 mosaic
TREE = Path(gpuseg.__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TREE), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def scene(mosaic, small_model, tmp_path_factory):
    """The conftest's model and mosaic (and the mosaic upside down) as .npy files, and their one-process outputs."""
    image, seg = mosaic[0], small_model
    folder = tmp_path_factory.mktemp("scene")
    np.save(folder / "a.npy", image)
    np.save(folder / "b.npy", image[::-1].copy())
    whole = {name: predict_to_zarr(seg, folder / f"{name}.npy", folder / f"{name}-whole.zarr", tile_shape=TILE,
                                   progress=False, client=None) for name in "ab"}
    return seg, seg.save(folder / "model.gpuseg"), folder, whole


@pytest.fixture(scope="module")
def client(scene):
    """Two worker processes of one thread, importing this tree, their kernels compiled by one small prediction."""
    seg, _, folder, _ = scene
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      worker_dashboard_address=None) as cluster, distributed.Client(cluster) as c:
            c.run(lambda: seg.predict(np.zeros((20, 20), np.float32), progress=False))
            assert all(p.startswith(str(TREE)) for p in c.run(lambda: gpuseg.__file__).values())
            yield c
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def _same_output(got, expected):
    got_path, expected_path = Path(str(got)), Path(str(expected))
    got, expected = zarr.open_group(str(got), mode="r"), zarr.open_group(str(expected), mode="r")
    assert sorted(got.array_keys()) == sorted(expected.array_keys())  # level 0 and the pyramid
    for level in expected.array_keys():
        np.testing.assert_array_equal(got[level][:], expected[level][:])
    assert dict(got.attrs) == dict(expected.attrs)  # both marked complete
    assert not (got_path / "0" / DONE_DIR).exists() and not (expected_path / "0" / DONE_DIR).exists()


def _wait_for_markers(out: Path, proc=None, at_least=1, timeout=120):
    deadline = time.monotonic() + timeout
    while not (out / "0" / DONE_DIR).is_dir() or len(os.listdir(out / "0" / DONE_DIR)) < at_least:
        assert proc is None or proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no tile was finished in time"
        time.sleep(0.005)


def test_client_equals_one_process(scene, client, tmp_path):
    seg, _, folder, whole = scene
    out = predict_to_zarr(seg, folder / "a.npy", tmp_path / "a.zarr", tile_shape=TILE, progress=False, client=client)
    _same_output(out, whole["a"])
    # the active client is used without being named; a resumed, finished output has nothing left to do
    again = predict_to_zarr(seg, folder / "a.npy", tmp_path / "b.zarr", tile_shape=TILE, progress=False)
    _same_output(again, whole["a"])


def test_memory_output_refused_with_worker_processes(scene, client):
    seg, _, folder, _ = scene
    with pytest.raises(ValueError, match="memory"):
        predict_to_zarr(seg, folder / "a.npy", "memory://gpuseg-test/a.zarr", tile_shape=TILE, progress=False)


def test_worker_killed_mid_run(scene, client, tmp_path):
    seg, _, folder, whole = scene
    out = tmp_path / "a.zarr"
    errors = []

    def run():
        try:
            predict_to_zarr(seg, folder / "a.npy", out, tile_shape=TILE, progress=False, client=client)
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for_markers(out)
        victim, pid = sorted(client.run(os.getpid).items())[0]
        os.kill(pid, signal.SIGKILL)
        killed_at = len(os.listdir(out / "0" / DONE_DIR))
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive() and not errors, errors
    assert killed_at < N_TILES, "the run ended before a worker could be killed"
    _same_output(out, whole["a"])
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker
    assert victim not in client.run(os.getpid) or client.run(os.getpid)[victim] != pid


def test_client_killed_mid_run_then_resumed(scene, client, tmp_path):
    seg, model, folder, whole = scene
    out = tmp_path / "a.zarr"
    command = [sys.executable, "-m", "gpuseg.cli", "predict", str(model), str(folder / "a.npy"), "-o", str(out),
               "--tile", str(TILE[0]), "--scheduler", client.scheduler.address]
    proc = subprocess.Popen(command, env=ENV, stderr=subprocess.DEVNULL)
    try:
        _wait_for_markers(out, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    time.sleep(1)  # tasks already running on the workers may still finish
    markers = os.listdir(out / "0" / DONE_DIR)
    chunks = {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in markers}
    assert 0 < len(markers) < N_TILES
    assert subprocess.run(command, env=ENV, timeout=300, capture_output=True).returncode == 0
    assert {m: (out / "0" / "c" / m.replace(".", "/")).stat().st_mtime_ns for m in markers} == chunks  # kept
    _same_output(out, whole["a"])


def test_cli_two_files_file_urls_equal_one_process(scene, client, tmp_path, capsys):
    _, model, folder, whole = scene
    inputs = [f"file://{folder / 'a.npy'}", str(folder / "b.npy")]
    assert main(["predict", str(model), *inputs, "-o", f"file://{tmp_path}/out", "--tile", str(TILE[0]),
                 "--scheduler", client.scheduler.address]) == 0, capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out")) == ["a_labels.zarr", "b_labels.zarr"]
    for name in "ab":
        _same_output(tmp_path / "out" / f"{name}_labels.zarr", whole[name])


def test_cli_local_cluster(scene, tmp_path, capsys):
    _, model, folder, whole = scene
    out = tmp_path / "b.zarr"
    assert main(["predict", str(model), str(folder / "b.npy"), "-o", str(out), "--tile", str(TILE[0]),
                 "--scheduler", "local:2"]) == 0, capsys.readouterr().err
    _same_output(out, whole["b"])
    for refused, match in [("o.tif", "outputs are Zarr"), ("o.zarr", "positive number")]:
        scheduler = "local:0" if refused == "o.zarr" else "local:2"
        assert main(["predict", str(model), str(folder / "a.npy"), "-o", str(tmp_path / refused),
                     "--scheduler", scheduler]) == 2
        assert match in capsys.readouterr().err


def test_time_series_frame_by_frame(scene, client, tmp_path):
    """A T axis on the cluster: each task is one tile of one frame; the output equals one process's."""
    seg, _, folder, _ = scene
    image = np.load(folder / "a.npy")
    np.save(tmp_path / "movie.npy", np.stack([image, image[::-1]]))
    kwargs = dict(axes="TYX", tile_shape=TILE, progress=False)
    whole = predict_to_zarr(seg, tmp_path / "movie.npy", tmp_path / "whole.zarr", client=None, **kwargs)
    out = predict_to_zarr(seg, tmp_path / "movie.npy", tmp_path / "movie.zarr", client=client, **kwargs)
    _same_output(out, whole)
    assert zarr.open_group(str(out), mode="r")["0"].shape == (2,) + image.shape
