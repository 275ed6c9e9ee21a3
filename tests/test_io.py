"""_io: atomic file and folder writes, leftovers of killed writers, and the umask."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import exchange_supported

from refinery_quaterion import _io
from refinery_quaterion._io import atomic_dir, atomic_path, atomic_write_text, current_umask, respect_umask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """``umask(value)`` sets the process umask for the test; the old one is restored after."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.fixture
def steps() -> Iterator[list[str]]:
    """The labels `_io` passes its fault hook while the test runs."""
    seen: list[str] = []
    _io._FAULT_HOOK = seen.append
    yield seen
    _io._FAULT_HOOK = None


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


def test_atomic_write_text_writes_and_replaces_leaving_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "one ✓\n")
    assert target.read_text(encoding="utf-8") == "one ✓\n"
    atomic_write_text(target, "two\n")
    assert target.read_text(encoding="utf-8") == "two\n"
    assert listing(target.parent) == ["a.json"]


def test_atomic_path_keeps_the_old_file_on_an_exception(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and listing(tmp_path) == ["a.csv"]


def test_atomic_path_names_its_temporary_file_recognisably(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.bin") as tmp:
        assert tmp.parent == tmp_path and _io._OURS.match(tmp.name)["name"] == "x.bin"
        with open(tmp, "wb") as handle:
            handle.write(b"\0\1")
    assert (tmp_path / "x.bin").read_bytes() == b"\0\1"


# --------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------


def write_folder(folder: Path, version: str) -> None:
    (folder / "sub").mkdir()
    (folder / "a.txt").write_text(version)
    atomic_write_text(folder / "sub" / "b.txt", version * 2)


def read_folder(folder: Path) -> tuple[str, str]:
    return (folder / "a.txt").read_text(), (folder / "sub" / "b.txt").read_text()


def test_atomic_dir_refuses_an_existing_path_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "m"
    with atomic_dir(target) as tmp:
        write_folder(tmp, "A")
    with pytest.raises(FileExistsError, match="overwrite=True"), atomic_dir(target) as tmp:
        pytest.fail("not reached")
    with atomic_dir(target, overwrite=True) as tmp:
        write_folder(tmp, "B")
    assert read_folder(target) == ("B", "BB")
    assert target.is_dir() and not target.is_symlink()  # a real folder, not a link
    assert listing(tmp_path) == ["m"]


def test_atomic_dir_keeps_the_old_folder_on_an_exception(tmp_path: Path) -> None:
    target = tmp_path / "m"
    with atomic_dir(target) as tmp:
        write_folder(tmp, "A")
    with pytest.raises(ValueError), atomic_dir(target, overwrite=True) as tmp:
        write_folder(tmp, "B")
        raise ValueError
    assert read_folder(target) == ("A", "AA") and listing(tmp_path) == ["m"]


def test_atomic_dir_swaps_in_one_step_where_the_file_system_can(tmp_path: Path, steps: list[str]) -> None:
    if not exchange_supported(tmp_path):
        pytest.skip("this file system has no atomic exchange (renameat2 RENAME_EXCHANGE)")
    target = tmp_path / "m"
    target.mkdir()  # a plain folder, as earlier versions wrote it
    (target / "old.txt").write_text("old")
    with atomic_dir(target, overwrite=True) as tmp:
        write_folder(tmp, "B")
    assert "dir:exchanged" in steps and "dir:moved-old" not in steps
    assert listing(target) == ["a.txt", "sub"] and listing(tmp_path) == ["m"]


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_atomic_dir_replaces_a_file_and_a_link_but_not_the_link_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    parent = tmp_path / "p"
    parent.mkdir()
    (parent / "file").write_text("a file")
    (parent / "link").symlink_to(elsewhere)
    for name in ("file", "link"):
        with atomic_dir(parent / name, overwrite=True) as tmp:
            write_folder(tmp, name)
        assert not (parent / name).is_symlink() and read_folder(parent / name) == (name, name * 2)
    assert (elsewhere / "keep.txt").read_text() == "keep"
    assert listing(parent) == ["file", "link"]


def test_atomic_dir_refuses_a_dangling_link_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "m").symlink_to(tmp_path / "gone")
    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "m"):
        pass
    with atomic_dir(tmp_path / "m", overwrite=True) as tmp:
        write_folder(tmp, "A")
    assert read_folder(tmp_path / "m") == ("A", "AA")


def test_atomic_dir_refuses_a_path_that_appears_while_writing(tmp_path: Path) -> None:
    target = tmp_path / "m"
    with pytest.raises(FileExistsError), atomic_dir(target) as tmp:
        write_folder(tmp, "B")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
    assert listing(target) == ["theirs.txt"] and listing(tmp_path) == ["m"]


# --------------------------------------------------------------------------------------
# leftovers of killed writers
# --------------------------------------------------------------------------------------


def make_leftovers(parent: Path) -> dict[str, Path]:
    """Leftovers a kill can leave, plus user files that look similar and must stay."""
    parent.mkdir(exist_ok=True)
    made = {
        "tmp_dir": parent / ".m.rq-0123456789ab.tmp",
        "tmp_file": parent / ".m.json.rq-aaaaaaaaaaaa.tmp",
        "other_name": parent / ".x.rq-bbbbbbbbbbbb.tmp",
        "old_legacy": parent / ".m.abcd1234.tmp",
        "young_legacy": parent / ".m.efgh5678.tmp",
    }
    made["tmp_dir"].mkdir()
    (made["tmp_dir"] / "half.bin").write_bytes(b"x")
    made["tmp_file"].write_text("half")
    made["other_name"].mkdir()
    made["old_legacy"].mkdir()
    made["young_legacy"].mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(made["old_legacy"], (two_hours_ago, two_hours_ago))
    for user_name in (".m.old", ".m.tmp", "notes.tmp", ".other.abcd1234.tmp", ".m.rq-XYZ.tmp", "m.rq-0123456789ab.tmp"):
        (parent / user_name).write_text("user file")
    return made


def test_the_next_atomic_dir_removes_leftovers_and_only_those(tmp_path: Path) -> None:
    made = make_leftovers(tmp_path)
    with atomic_dir(tmp_path / "m") as tmp:
        write_folder(tmp, "A")
    assert listing(tmp_path) == sorted([
        "m", ".m.efgh5678.tmp",  # a leftover of the old module, but too young to be sure
        ".m.old", ".m.tmp", "notes.tmp", ".other.abcd1234.tmp", ".m.rq-XYZ.tmp", "m.rq-0123456789ab.tmp",
    ])
    assert not made["tmp_dir"].exists()


def test_atomic_path_removes_leftovers_once_per_folder_and_process(tmp_path: Path) -> None:
    parent = tmp_path / "p"
    made = make_leftovers(parent)
    atomic_write_text(parent / "m.json", "{}")
    assert not made["tmp_file"].exists() and not made["tmp_dir"].exists()
    again = parent / ".y.rq-cccccccccccc.tmp"
    again.write_text("half")
    atomic_write_text(parent / "m.json", "{}")
    assert again.exists()  # not scanned again by this process: cheap for folders with many files


def test_leftovers_of_a_running_writer_are_kept(tmp_path: Path) -> None:
    running = tmp_path / ".x.rq-0000000000aa.tmp"
    running.mkdir()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a writer in this folder holds while it writes
        with atomic_dir(tmp_path / "m") as tmp:
            write_folder(tmp, "A")
        assert running.exists()
    finally:
        os.close(fd)
    with atomic_dir(tmp_path / "n") as tmp:
        write_folder(tmp, "A")
    assert listing(tmp_path) == ["m", "n"]


def test_a_kill_between_the_two_fallback_renames_is_repaired_by_the_next_writer(tmp_path: Path) -> None:
    # the state a SIGKILL leaves between the fallback's renames: no `m`, the old content as .old,
    # the new one as .tmp
    old = tmp_path / ".m.rq-00000000000f.old"
    old.mkdir()
    write_folder(old, "A")
    new = tmp_path / ".m.rq-0000000000ff.tmp"
    new.mkdir()
    write_folder(new, "B")
    with atomic_dir(tmp_path / "other") as tmp:
        write_folder(tmp, "C")
    assert listing(tmp_path) == ["m", "other"] and read_folder(tmp_path / "m") == ("A", "AA")


def test_an_old_copy_beside_an_existing_target_is_removed(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "m") as tmp:
        write_folder(tmp, "B")
    (tmp_path / ".m.rq-00000000000f.old").mkdir()  # a kill after the fallback's second rename
    with atomic_dir(tmp_path / "other") as tmp:
        write_folder(tmp, "C")
    assert listing(tmp_path) == ["m", "other"] and read_folder(tmp_path / "m") == ("B", "BB")


# --------------------------------------------------------------------------------------
# umask
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                              (0o002, 0o664, 0o775)])
def test_everything_written_respects_the_umask(tmp_path: Path, umask, mask: int, file_mode: int,
                                               dir_mode: int) -> None:
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "a")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"b")
    with atomic_dir(tmp_path / "m") as tmp:
        write_folder(tmp, "A")  # plain files, a plain folder and an atomic_write_text inside
        fd, made = tempfile.mkstemp(dir=tmp)  # 0600 whatever the umask
        os.close(fd)
        (tmp / "private").mkdir(mode=0o700)
    assert mode(tmp_path / "a.txt") == file_mode and mode(tmp_path / "b.bin") == file_mode
    folder = tmp_path / "m"
    assert mode(folder) == dir_mode and mode(folder / "sub") == dir_mode and mode(folder / "private") == dir_mode
    for name in ("a.txt", "sub/b.txt", Path(made).name):
        assert mode(folder / name) == file_mode, name


def test_respect_umask_fixes_mkstemp_files_and_keeps_execute_bits(tmp_path: Path, umask) -> None:
    umask(0o022)
    fd, made = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(made)
    respect_umask(tmp_path)
    assert mode(Path(made)) == 0o644 and mode(script) == 0o755 and mode(tmp_path) == 0o755
    respect_umask(made, umask=0o077)
    assert mode(Path(made)) == 0o600
