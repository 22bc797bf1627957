"""Atomic outputs: a stage writes into a temporary sibling and renames it into place at the end,
so an interrupted stage never leaves a file or folder that DVC or a user would take as done.
The sibling's name carries the writer's host and pid (`.name.<host>-<pid>.<random>.tmp`); a writer
killed mid-write (SIGKILL) leaves it behind, and the next atomic write of the same output on that
host removes it once that pid no longer runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_mode(path: Path) -> None:
    # mkstemp/mkdtemp create 0600/0700; outputs should be as readable as any file the user writes.
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


class OutputError(OSError):
    """An output could not be written (disk full, read-only folder, file too large), in one line;
    whatever was at the target before is left as it was."""


@contextmanager
def output_errors(target: Path, *, rename_inner: bool = False) -> Iterator[None]:
    """An OSError inside becomes an OutputError naming `target` in one line. `rename_inner`: an
    OutputError raised inside (by an atomic write of a file in `target`'s temporary folder, which
    it would name) is said as `target`'s too."""
    try:
        yield
    except OutputError as error:
        if not rename_inner:
            raise
        reason = os.strerror(error.errno) if error.errno else type(error).__name__
        raise _output_error(target, error.errno, reason) from None
    except OSError as error:
        raise _output_error(target, error.errno, error.strerror or type(error).__name__) from None


def _output_error(target: Path, errno: int | None, reason: str) -> OutputError:
    return OutputError(
        errno, f"{target}: cannot write ({reason}); nothing was put in its place, the previous "
        "version (if any) is as it was; free space or make the folder writable and run the stage again"
    )


def _size_limit_errors() -> None:
    """A write past RLIMIT_FSIZE sends SIGXFSZ, which kills the process; ignored, the write fails
    with EFBIG instead and the stage can say so in one line."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread: leave the default
            pass


def writer_tag() -> str:
    """`<host>-<pid>` of this process, as temporary names carry it: a later run on the same host
    can tell a dead writer's leftovers (a shared folder's other hosts' are never judged)."""
    host = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def temp_prefix(target: Path) -> str:
    """The name start of `target`'s temporary siblings written by this process: `.name.<host>-<pid>.`"""
    return f".{target.name}.{writer_tag()}."


def _writer_gone(tag: str) -> bool:
    """Whether the writer `<host>-<pid>` is known to have ended: on this host, and no such pid runs."""
    host, _, pid = tag.rpartition("-")
    here, _, own = writer_tag().rpartition("-")
    if host != here or not pid.isdigit() or pid == own:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_stale_temps(folder: Path, name: str | None = None) -> int:
    """Remove the temporary siblings (`.<name>.<host>-<pid>.<random>.tmp`, `name` None: any) in
    `folder` whose writer is gone: left by a writer killed mid-write (SIGKILL, power cut), whose
    `finally` never ran. A live writer's (its pid running), or one of another host, is never
    touched; a pid reused by another process only keeps a leftover longer. Return how many were
    removed."""
    removed = 0
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for path in entries:
        entry = path.name
        if not (entry.startswith(".") and entry.endswith(".tmp")):
            continue
        parts = entry[1:-4].rsplit(".", 2)  # name, writer tag, random part (neither has a dot)
        if len(parts) != 3 or (name is not None and parts[0] != name) or not _writer_gone(parts[1]):
            continue
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed += 1
        except FileNotFoundError:  # another run cleaned it first
            pass
    return removed


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it goes.
    An OSError while writing becomes an OutputError that names `target` in one line."""
    target = Path(target)
    _size_limit_errors()
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, target.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            _normal_mode(tmp_path)
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE): at every moment each name
    holds one whole version. False where the system or the file system cannot (then nothing moved)."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` whole.
    A previous `target` is swapped out in one step (exchange_paths), so a SIGKILL at any moment
    leaves either the previous folder or the new one there, never a partial or missing one; where
    the file system cannot swap, the previous one is moved aside first, and a kill between the two
    renames leaves no `target` (still never a partial one).
    An OSError while writing becomes an OutputError that names `target` in one line."""
    target = Path(target)
    _size_limit_errors()
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            _normal_mode(tmp)
            if not (target.exists() or target.is_symlink()):
                os.replace(tmp, target)
            elif not exchange_paths(tmp, target):  # tmp holds the previous version now, when it could swap
                aside = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent))
                os.replace(target, aside) if target.is_dir() and not target.is_symlink() else os.replace(target, aside / "file")
                os.replace(tmp, target)
                shutil.rmtree(aside)
        finally:
            if tmp.exists() or tmp.is_symlink():
                _remove(tmp)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, data: Any) -> None:
    """Write JSON atomically, indented and key-stable so git diffs of metrics stay readable."""
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")
