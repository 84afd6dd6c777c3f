"""Where uploaded files live: a local directory (the default) or any S3-compatible bucket.

Jobs read files by the key the web app stored in `documents.storage_key`. A missing key is
NotFound (permanent); a store that does not answer is TransientError, counted by the
"storage" breaker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from app.errors import NotFound, PermanentError, TransientError
from app.settings import Settings


class Storage(Protocol):
    async def get(self, key: str, *, max_bytes: int) -> bytes:
        """The file's bytes; NotFound if absent, PermanentError if larger than `max_bytes`."""
        ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


def too_large(key: str, size: int, max_bytes: int) -> PermanentError:
    return PermanentError(f"file {key!r} is {size} bytes, above DOCUMENT_MAX_BYTES={max_bytes}")


class LocalStorage:
    """Files under one directory; keys are relative paths that may not leave it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise PermanentError(f"storage key {key!r} points outside the storage directory")
        return path

    async def get(self, key: str, *, max_bytes: int) -> bytes:
        path = self._path(key)
        try:
            # File reads block; a slow disk must not stall the loop.
            return await asyncio.to_thread(_read_capped, path, key, max_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"file {key!r} is not in storage") from None
        except PermissionError as exc:
            raise PermanentError(f"file {key!r} cannot be read: {exc}") from exc
        except OSError as exc:
            raise TransientError(f"reading {key!r} failed: {exc}") from exc

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        await asyncio.to_thread(_write, path, data)

    async def aclose(self) -> None:
        return None


def _read_capped(path: Path, key: str, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise too_large(key, size, max_bytes)
    return path.read_bytes()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        from app.providers.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)
