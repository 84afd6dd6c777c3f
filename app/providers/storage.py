"""Where uploaded files live: a local directory (the default) or any S3-compatible bucket.

Jobs read files by the key the web app stored in `documents.storage_key`. A missing key is
NotFound (permanent); a store that does not answer is TransientError, counted by the
"storage" breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from app.config.features import StorageSettings
from app.config.services import S3Settings
from app.errors import NotFound, PermanentError, TransientError


class Storage(Protocol):
    async def get(self, key: str, *, max_bytes: int) -> bytes:
        """The file's bytes; NotFound if absent, PermanentError if larger than `max_bytes`."""
        ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


def too_large(key: str, size: int, max_bytes: int) -> PermanentError:
    return PermanentError(f"file {key!r} is {size} bytes, above DOCUMENT_MAX_BYTES={max_bytes}")


class LocalStorage:
    """Files under one directory; keys are relative paths that may not leave it.

    Only regular files are read. A FIFO, a device or a socket under the directory would block
    the reading thread forever (open() of a FIFO waits for a writer, a read of /dev/zero never
    ends), and asyncio cannot cancel a thread: the job's timeout would fire but the thread would
    stay, and shutdown would wait for it. So the file is opened with O_NONBLOCK (which returns at
    once for a FIFO) and O_NOFOLLOW, and fstat must say S_ISREG before a byte is read."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # resolve() follows symlinks, so a link that points out of the directory is refused too.
        try:
            path = (self.root / key).resolve()
        except (ValueError, OSError) as exc:  # a NUL byte, a name too long, a symlink loop
            raise PermanentError(f"storage key {key[:200]!r} is not a usable path: {exc}") from None
        if not path.is_relative_to(self.root) or path == self.root:
            raise PermanentError(f"storage key {key[:200]!r} points outside the storage directory")
        return path

    async def get(self, key: str, *, max_bytes: int) -> bytes:
        path = self._path(key)
        shown = key[:200]
        try:
            # File reads block; a slow disk must not stall the loop.
            return await asyncio.to_thread(_read_capped, path, shown, max_bytes)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"file {shown!r} is not in storage") from None
        except PermissionError as exc:
            raise PermanentError(f"file {shown!r} cannot be read: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise PermanentError(f"storage key {shown!r} is not a usable path: {exc.strerror}") from None
            if exc.errno in _NOT_A_FILE_ERRNOS:
                raise PermanentError(f"file {shown!r} is not a regular file (symlink, socket or device)") from None
            raise TransientError(f"reading {shown!r} failed: {exc.strerror}") from exc

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        await asyncio.to_thread(_write, path, data)

    async def aclose(self) -> None:
        return None


# open() failures that mean "this is not a regular file": ELOOP (O_NOFOLLOW met a symlink put in
# after resolve()), ENXIO (a unix socket, or a FIFO opened for writing), EISDIR.
_NOT_A_FILE_ERRNOS = {errno.ELOOP, errno.ENXIO, errno.EISDIR}


def _read_capped(path: Path, key: str, max_bytes: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PermanentError(f"file {key!r} is not a regular file ({_kind(info.st_mode)}); refused")
        if info.st_size > max_bytes:
            raise too_large(key, info.st_size, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # the file may have grown since fstat
        if len(data) > max_bytes:
            raise too_large(key, len(data), max_bytes)
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _write(path: Path, data: bytes) -> None:
    """Write a new file next to the target, then rename it over: never a half-written file, and
    never an open() for writing of whatever (a FIFO) sits at the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def build_storage(storage: StorageSettings, s3: S3Settings) -> Storage:
    if storage.backend == "s3":
        from app.providers.s3 import S3Storage

        return S3Storage.from_settings(s3)
    return LocalStorage(storage.dir)
