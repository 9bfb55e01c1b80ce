"""Writes that lose nothing: outputs never over inputs, modes from the umask, stale temporaries removed."""

import os
import stat
import subprocess
import sys

import pytest

from gpuseg._file_guards import atomic_write, check_outputs, content_identity, remove_stale_temporaries


@pytest.mark.parametrize("src, dst, relation", [
    ("in.tif", "in.tif", "the same path as"), ("in.zarr", "in.zarr/labels.zarr", "inside"),
    ("frames/a.tif", "frames", "a folder holding"), ("frames/a.tif", "./frames/../frames/a.tif", "the same path as"),
])
def test_outputs_over_inside_or_around_inputs_are_refused(tmp_path, monkeypatch, src, dst, relation):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"is {relation} the input"):
        check_outputs([(src, dst)])


def test_two_inputs_to_one_output_are_refused():
    check_outputs([("a/x.tif", "out/x_labels.tif"), ("b/y.tif", "out/y_labels.tif")])
    with pytest.raises(ValueError, match="a/x.tif and b/x.npy would both be written to out/x_labels.tif"):
        check_outputs([("a/x.tif", "out/x_labels.tif"), ("b/x.npy", "out/x_labels.tif")])


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", lambda f: f.write(b"x"))
        os.umask(0o077)
        atomic_write(tmp_path / "b", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == 0o644 and _mode(tmp_path / "b") == 0o600


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "labels.tif"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and _mode(path) == 0o640


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "out.npy"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that has just ended
    stale = tmp_path / f".out.npy.gpuseg-{dead}-0123abcd.tmp"
    live = tmp_path / f".out.npy.gpuseg-{os.getppid()}-0123abcd.tmp"  # a writer still running
    other = tmp_path / ".other.npy.gpuseg-1-0123abcd.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    atomic_write(path, lambda f: f.write(b"x"))
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(path) == []


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x", fail)
    assert list(tmp_path.iterdir()) == []


def test_content_identity_sees_a_rewritten_chunk(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "0.0").write_bytes(b"aaaa")
    before = content_identity(tmp_path)
    (tmp_path / "c" / "0.0").write_bytes(b"bbbbb")
    assert content_identity(tmp_path) != before
    assert content_identity(tmp_path) == content_identity(tmp_path)
