"""Files and folders that are whole or absent: what a kill, a full disk or a second process leaves behind is never
taken for the real thing.

Everything is written under a hidden temporary name beside its final place and renamed into it once complete
(``os.replace`` is atomic on POSIX file systems: a reader sees the old version or the new one, never a part of one).
A failed write removes its temporary copy and leaves the previous version as it was. ``file_lock`` lets processes
that work on the same path take turns (``fcntl.flock``: advisory, and reliable on local file systems only).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# what the writers of a full disk raise: OSError from Python, a message from torch's and safetensors' native writers
_OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OUT_OF_SPACE_MESSAGES = ("No space left on device", "StorageFull", "Disk quota exceeded", "file write failed")


def temporary_sibling(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """A hidden, unique name in ``path``'s folder (the same file system, so a rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write a file or a folder to; once the block ends it replaces ``path`` (a folder is
    put in place by ``replace_dir``). If the block raises, the temporary copy is removed and ``path`` is untouched."""
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove_if_empty(folder: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def remove_leftovers(folder: str | os.PathLike, name: str = "*") -> None:
    """Remove the temporary copies of ``folder/name`` (every file's by default) that killed writers left there; call
    it only while no other process writes them (under their lock, or in a run's own output folder)."""
    for tag in ("tmp", "old"):
        for stale in Path(folder).glob(f".{name}.{tag}-*-*"):
            remove(stale)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Put the complete folder ``src`` in place of ``dst``, removing what ``dst`` held.

    Two renames when ``dst`` exists (POSIX cannot swap folders in one step): a kill between them leaves no ``dst`` and
    the old one under a hidden name, never a ``dst`` that mixes the two."""
    dst = Path(dst)
    old = None
    if dst.exists():
        old = temporary_sibling(dst, "old")
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        remove(old)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block; other holders wait."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the quota) is full."""
    if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE_ERRNOS:
        return True
    return any(message in str(error) for message in _OUT_OF_SPACE_MESSAGES)
