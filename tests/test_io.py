"""data_tools.io: atomic writes keep the previous file byte-identical on failure and respect the umask."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource

import pytest

from data_tools.io import (atomic_directory, atomic_files, atomic_path, save_figure, write_bytes, write_json,
                           write_text)


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_replaces_whole_and_respects_umask(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "b.txt", "hi")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "b.txt").st_mode & 0o777) == 0o640
    assert _listing(tmp_path) == ["a.json", "b.txt"]


def test_failed_verify_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    write_bytes(target, b"good")

    def reject(path):
        raise ValueError(f"{path}: does not load")

    with pytest.raises(ValueError, match="does not load"):
        with atomic_path(target, verify=reject) as tmp:
            assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "wb") as handle:
                handle.write(b"broken")
    assert target.read_bytes() == b"good"
    assert _listing(tmp_path) == ["model.keras"]


def test_exception_inside_the_block_leaves_previous_file(tmp_path):
    target = tmp_path / "x.bin"
    write_bytes(target, b"v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"v1" and _listing(tmp_path) == ["x.bin"]


def test_clear_errors_for_impossible_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file is a file, not a folder"):
        write_text(tmp_path / "file" / "out.txt", "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_text(tmp_path / "missing" / "out.txt", "x")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_text(tmp_path, "x")


def test_directory_swap_and_failed_swap(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_directory(target) as tmp:
        open(os.path.join(tmp, "v"), "w").write("1")
    with atomic_directory(target) as tmp:
        open(os.path.join(tmp, "v"), "w").write("2")
    assert (target / "v").read_text() == "2"
    with pytest.raises(ValueError):
        with atomic_directory(target, verify=lambda p: (_ for _ in ()).throw(ValueError("bad"))) as tmp:
            open(os.path.join(tmp, "v"), "w").write("3")
    assert (target / "v").read_text() == "2" and _listing(tmp_path) == ["saved_model"]


def test_save_figure_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    save_figure(figure, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _listing(tmp_path) == ["p.png"]


FILE_SET = ("a.keras", "b.json", "c.csv", "d.png")


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """RLIMIT_FSIZE, as a full disk: writing past ``limit`` bytes fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _old_set(folder) -> dict[str, bytes]:
    for name in FILE_SET:
        write_bytes(folder / name, f"old {name}".encode())
    return {name: (folder / name).read_bytes() for name in FILE_SET}


def test_a_file_set_lands_whole(tmp_path):
    _old_set(tmp_path)
    with atomic_files() as files:
        for name in FILE_SET:
            files.write_text(tmp_path / name, f"new {name}")
        assert all((tmp_path / name).read_text() == f"old {name}" for name in FILE_SET)  # nothing before the end
    assert {name: (tmp_path / name).read_text() for name in FILE_SET} == {n: f"new {n}" for n in FILE_SET}
    assert _listing(tmp_path) == list(FILE_SET)


@pytest.mark.parametrize("failing", range(len(FILE_SET)))
def test_a_write_failing_at_any_file_of_a_set_changes_none(tmp_path, failing):
    """A real failing write (the size limit of a full disk) at the k-th file, after the files before it were
    written: every file keeps its old bytes and no temporary is left."""
    before = _old_set(tmp_path)
    with pytest.raises(OSError) as raised:
        with atomic_files() as files:
            for index, name in enumerate(FILE_SET):
                data = b"x" * (4096 if index == failing else 16)
                with _file_size_limit(1024):
                    files.write_bytes(tmp_path / name, data)
    assert raised.value.errno == errno.EFBIG and raised.value.filename == str(tmp_path / FILE_SET[failing])
    assert {name: (tmp_path / name).read_bytes() for name in FILE_SET} == before
    assert _listing(tmp_path) == list(FILE_SET)


@pytest.mark.parametrize("blocked", range(1, len(FILE_SET)))
def test_a_move_failing_mid_set_puts_back_the_files_already_moved(tmp_path, blocked):
    """The k-th target becomes a folder once every file is written, so its move fails after the ones before
    it moved: those are put back, byte-identical, and a target that did not exist is removed again."""
    before = _old_set(tmp_path)
    (tmp_path / FILE_SET[0]).unlink()
    del before[FILE_SET[0]]
    with pytest.raises(OSError):
        with atomic_files() as files:
            for name in FILE_SET:
                files.write_text(tmp_path / name, f"new {name}")
            (tmp_path / FILE_SET[blocked]).unlink()
            (tmp_path / FILE_SET[blocked]).mkdir()
            (tmp_path / FILE_SET[blocked] / "inside").write_text("a folder where a file was")
    assert not (tmp_path / FILE_SET[0]).exists()
    assert {name: (tmp_path / name).read_bytes() for name in FILE_SET[1:] if name != FILE_SET[blocked]} == {
        name: data for name, data in before.items() if name != FILE_SET[blocked]}
    assert _listing(tmp_path) == sorted(FILE_SET[1:])
