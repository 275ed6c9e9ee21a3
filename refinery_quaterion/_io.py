"""Crash-safe file and folder writes that respect the umask.

Every output is written under a temporary name beside its target and then renamed onto it, so
a reader of the target sees the complete old or the complete new content, never a mix, also
when the writing process is killed (SIGKILL included) at any point:

- A file (`atomic_path`, `atomic_write_text`) is replaced by one ``rename``.
- A folder (`atomic_dir`) is replaced by one atomic *exchange* of the new folder with the old
  one (Linux ``renameat2(RENAME_EXCHANGE)``); the old content then sits under a temporary
  name and is deleted. The target stays a real folder: no symlinks, nothing to recover on
  read. Where the file system cannot exchange (see "Limits"), two renames are used and a
  kill between them is repaired by the next write to the same parent folder.

Temporary names are ``.<name>.rq-<12 hex digits>.tmp`` (and ``….old`` for the two-rename
fallback). A writer holds a shared ``flock`` on the parent folder for as long as such names of
its own exist; the leftovers of a killed writer are removed by the next writer that gets the
lock exclusively (`atomic_dir`: every call; `atomic_path`: the first call per folder and
process). Only names of that exact form are ever removed, plus, for the name being written,
``.<name>.<8 characters>.tmp`` leftovers of earlier versions of this module that are over an
hour old.

New files get mode ``0o666 & ~umask`` and folders ``0o777 & ~umask``, as a plain ``open`` and
``mkdir`` would give (``tempfile.mkstemp``/``mkdtemp`` give 0600/0700, which other users and
containers cannot read); `respect_umask` applies the same rule to files written elsewhere.

Limits: the exchange needs Linux >= 3.15 and a local file system that supports it (ext4, xfs,
btrfs, tmpfs, overlayfs); on NFS, most FUSE file systems, macOS and Windows the two-rename
fallback leaves the target missing for the instant between the renames. Without ``fcntl``
(Windows) or where ``flock`` fails (some network file systems) leftovers are not removed
automatically. A reader that opens the files of a folder one by one while another process
replaces it may read some from the old and some from the new folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from refinery_quaterion.errors import OutputExistsError, SettingError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_dir", "atomic_path", "atomic_write_text", "current_umask", "refuse_output_over_inputs",
           "respect_umask"]

_MARK = "rq-"
_OURS = re.compile(r"^\.(?P<name>.+)\.rq-(?P<token>[0-9a-f]{12})\.(?P<kind>tmp|old)$", re.DOTALL)
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$", re.DOTALL)  # tempfile names of the old module
_LEGACY_AGE_S = 3600.0
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM}

_FAULT_HOOK: Callable[[str], None] | None = None
"""Test hook: called with a label at every step where a crash would leave a distinct state."""

_umask_lock = threading.Lock()
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def _step(label: str) -> None:
    if _FAULT_HOOK is not None:
        _FAULT_HOOK(label)


# --------------------------------------------------------------------------------------
# permissions
# --------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Reads ``Umask:`` from ``/proc/self/status`` (Linux >= 4.7); elsewhere sets and restores
    it under a lock, which is racy only against other threads creating files at that instant.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def respect_umask(path: str | os.PathLike, *, umask: int | None = None) -> None:
    """Give ``path`` (and, for a folder, everything below it) the modes a plain write would.

    Files get ``0o666 & ~umask`` (``0o777 & ~umask`` if any execute bit was set), folders
    ``0o777 & ~umask``; symbolic links are left alone. Call it on files or folders made with
    ``tempfile.mkstemp``/``mkdtemp`` (mode 0600/0700) before renaming them into place.

    Args:
        path: A file or folder you own.
        umask: The mask to apply; the current process umask by default.
    """
    mask = current_umask() if umask is None else umask
    path = Path(path)
    _chmod_one(path, mask)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                _chmod_one(Path(root, name), mask)


def _chmod_one(path: Path, mask: int) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return
    full = 0o777 if stat.S_ISDIR(info.st_mode) or info.st_mode & 0o111 else 0o666
    mode = full & ~mask
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


# --------------------------------------------------------------------------------------
# public writers
# --------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename (never half-written)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path``; rename it onto ``path`` on success.

    Write to the yielded path (by name, e.g. ``frame.to_csv(tmp)``, or ``open(tmp, "wb")``).
    On success it gets the umask's mode, is flushed to disk and replaces ``path`` in one
    rename. On an exception it is removed and ``path`` is left as it was. Missing parent
    folders are created.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    inside_atomic_dir = bool(_OURS.match(parent.name))  # that one cleans, and syncs the whole tree
    key = os.path.abspath(parent)
    with _cleaned_lock:
        first = key not in _cleaned and not inside_atomic_dir
        if first:
            _cleaned.add(key)
    with _writer_lock(parent, clean=first, name=path.name):
        tmp = _new_temp(parent, path.name, folder=False)
        try:
            yield tmp
            _step("file:written")
            respect_umask(tmp)
            if not inside_atomic_dir:
                _fsync(tmp)
            os.replace(tmp, path)
            _step("file:replaced")
            if not inside_atomic_dir:
                _fsync(parent)
        finally:
            _remove(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; swap it into place on success.

    At every instant ``path`` holds the complete old or the complete new content, even if the
    process is killed (see the module notes for the file systems where this holds). On an
    exception the temporary folder is removed and ``path`` is left as it was. Leftovers of
    earlier killed writes in the same parent folder are removed first.

    An existing ``path`` may be a folder, a file or a symbolic link (the link is replaced, not
    its target); a folder written by an earlier version of this library is replaced the same
    way.

    Args:
        path: Final folder.
        overwrite: Replace an existing ``path``; otherwise an existing one is refused.

    Raises:
        FileExistsError: If ``path`` exists (or appears while writing) and ``overwrite`` is false.
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(parent, clean=True, name=path.name):
        if os.path.lexists(path) and not overwrite:
            raise OutputExistsError(path)
        tmp = _new_temp(parent, path.name, folder=True)
        try:
            _step("dir:created")
            yield tmp
            _step("dir:written")
            respect_umask(tmp)
            _fsync_tree(tmp)
            _step("dir:synced")
            _install(tmp, path, overwrite=overwrite)
            _fsync(parent)
        finally:
            _remove(tmp)
            _step("dir:done")


# --------------------------------------------------------------------------------------
# swapping
# --------------------------------------------------------------------------------------


def _install(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` to ``path``; afterwards ``tmp`` is gone or holds the old content."""
    for _ in range(10):  # retried only if `path` appears or vanishes under our feet
        if not overwrite or not os.path.lexists(path):
            try:
                _rename_noreplace(tmp, path)
                _step("dir:renamed")
                return
            except FileExistsError:
                if not overwrite:
                    raise OutputExistsError(path) from None
                continue
        try:
            exchanged = _exchange(tmp, path)
        except FileNotFoundError:
            continue
        if exchanged:
            _step("dir:exchanged")
            return
        break
    # No atomic exchange here: two renames. A kill between them leaves `path` missing and the
    # old content under `.<name>.rq-….old`, which the next writer in this folder renames back.
    old = _temp_name(path.parent, path.name, "old")
    os.replace(path, old)
    _step("dir:moved-old")
    os.replace(tmp, path)
    _step("dir:renamed")
    _remove(old)


_renameat2: Callable[..., int] | None | bool = False  # False: not looked up yet


def _get_renameat2() -> Callable[..., int] | None:
    global _renameat2
    if _renameat2 is False:
        function = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded
                function = libc.renameat2
                function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                function.restype = ctypes.c_int
        _renameat2 = function
    return _renameat2  # type: ignore[return-value]


def _call_renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2``; False if this system or file system does not support ``flags``."""
    function = _get_renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b``; False if not supported here."""
    return _call_renameat2(a, b, _RENAME_EXCHANGE)


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, raising `FileExistsError` if ``dst`` exists."""
    if _call_renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):  # racy fallback, only where RENAME_NOREPLACE is missing
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


# --------------------------------------------------------------------------------------
# temporary names, locking, leftovers
# --------------------------------------------------------------------------------------


def _temp_name(parent: Path, name: str, kind: str) -> Path:
    return parent / f".{name}.{_MARK}{secrets.token_hex(6)}.{kind}"


def _new_temp(parent: Path, name: str, *, folder: bool) -> Path:
    """Create an empty file or folder under a fresh temporary name (umask applies)."""
    while True:
        tmp = _temp_name(parent, name, "tmp")
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def _writer_lock(parent: Path, *, clean: bool, name: str) -> Iterator[None]:
    """Hold a shared lock on ``parent`` while writing; first clean leftovers if it is free."""
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fd is not None:
            if clean:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # another writer is busy here (or no flock): leave leftovers
                    pass
                else:
                    _clean(parent, name)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except OSError:
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _clean(parent: Path, name: str) -> None:
    """Remove leftovers of killed writers in ``parent`` (call with the exclusive lock held).

    A ``.old`` whose target is missing (a kill between the two fallback renames) is renamed
    back to its target first.
    """
    ours: list[tuple[Path, str, str]] = []
    legacy: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = _OURS.match(entry.name)
        if match:
            ours.append((Path(entry.path), match["name"], match["kind"]))
        elif (match := _LEGACY.match(entry.name)) and match["name"] == name:
            legacy.append(Path(entry.path))
    olds: dict[str, list[Path]] = {}
    for path, target, kind in ours:
        if kind == "old":
            olds.setdefault(target, []).append(path)
    for target, paths in olds.items():
        if not os.path.lexists(parent / target):
            newest = max(paths, key=_mtime)
            with contextlib.suppress(OSError):
                _rename_noreplace(newest, parent / target)
                _step("clean:restored")
    for path, target, kind in ours:
        if kind == "tmp" or os.path.lexists(parent / target):
            _remove(path)
            _step("clean:removed")
    now = time.time()
    for path in legacy:
        if now - _mtime(path) > _LEGACY_AGE_S:
            _remove(path)


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree; missing is fine, errors are ignored (best effort)."""
    try:
        info = path.lstat()
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError):
            path.unlink()
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for child in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, child))
            _step("remove:file")
        for child in dirs:
            full = os.path.join(root, child)
            with contextlib.suppress(OSError):
                if os.path.islink(full):
                    os.unlink(full)
                else:
                    os.rmdir(full)
    with contextlib.suppress(OSError):
        os.rmdir(path)


# --------------------------------------------------------------------------------------
# durability
# --------------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    """Flush a file's or folder's data to disk (best effort: some systems cannot for folders)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            full = Path(root, name)
            if not full.is_symlink():
                _fsync(full)
        _fsync(Path(root))


# --------------------------------------------------------------------------------------
# outputs that would destroy inputs
# --------------------------------------------------------------------------------------


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def refuse_output_over_inputs(output: str | os.PathLike | None,
                              inputs: Mapping[str, str | os.PathLike | None]
                              | Iterable[tuple[str, str | os.PathLike | None]], *, setting: str = "out") -> None:
    """Refuse an output path that is, contains or lies inside one of the command's inputs.

    Replacing such an output (``overwrite=True``) would delete the input the command reads, so
    it is refused before anything is read or written. Symbolic links are resolved first.

    Args:
        output: The output file or folder (``None``: nothing to check).
        inputs: What each input is called in the message (``"the export"``) -> its path, as a
            mapping or ``(name, path)`` pairs; ``None`` paths (an input given as data, not as a
            file) are skipped.
        setting: The setting that names the output (``"out"``, ``"report_dir"``).

    Raises:
        SettingError: Naming the output, the input and the setting to change.
    """
    if output is None:
        return
    out = _resolved(output)
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    for name, path in pairs:
        if path is None:
            continue
        source = _resolved(path)
        if out == source:
            relation = "is"
        elif out in source.parents:
            relation = "contains"
        elif source in out.parents:
            relation = "lies inside"
        else:
            continue
        raise SettingError(f"{{{setting}}} {relation} {name} {os.fspath(path)}; writing it would destroy the input",
                           settings={setting: os.fspath(output)},
                           alternative="choose an output path outside the inputs")
