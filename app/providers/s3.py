"""The S3-compatible storage backend (AWS S3, DigitalOcean Spaces, MinIO) on aiobotocore.

aiobotocore is the maintained asyncio port of botocore; it is the `s3` extra, imported only
when STORAGE_BACKEND=s3. Its own retries are off: our retry policy and breaker decide.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from app.config.services import S3Settings
from app.errors import NotFound, PermanentError, TransientError
from app.providers.storage import too_large

# S3 error codes that mean "try again later" even though some arrive with a 4xx status.
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3Storage:
    """Objects in one bucket; the client is opened on first use and kept for the process."""

    def __init__(self, bucket: str, client_kwargs: dict[str, Any]) -> None:
        self.bucket = bucket
        self._client_kwargs = client_kwargs
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: S3Settings) -> S3Storage:
        if not settings.bucket:
            raise PermanentError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        secret = settings.secret_access_key
        return cls(settings.bucket, {
            "region_name": settings.region,
            "endpoint_url": settings.endpoint_url or None,
            "aws_access_key_id": settings.access_key_id,
            "aws_secret_access_key": secret.get_secret_value() if secret else None,
        })

    async def _open(self) -> Any:
        async with self._lock:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
                creator = get_session().create_client("s3", config=config, **self._client_kwargs)
                self._client = await self._stack.enter_async_context(creator)
            return self._client

    async def get(self, key: str, *, max_bytes: int) -> bytes:
        client = await self._open()
        with _translated(key):
            reply = await client.get_object(Bucket=self.bucket, Key=key)
            size = int(reply.get("ContentLength") or 0)
            async with reply["Body"] as body:
                if size > max_bytes:
                    raise too_large(key, size, max_bytes)
                data: bytes = await body.read()
                return data

    async def put(self, key: str, data: bytes) -> None:
        client = await self._open()
        with _translated(key):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def create_bucket(self) -> None:
        """Create the bucket (set-up scripts and tests; production buckets exist beforehand)."""
        client = await self._open()
        with _translated(self.bucket):
            await client.create_bucket(Bucket=self.bucket)

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None


class _translated:
    """Turn botocore's and the transport's failures into our error tree."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, Exception):
            return
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            raise _from_client_error(self.key, exc.response) from exc
        if isinstance(exc, BotoCoreError | OSError | asyncio.TimeoutError):
            raise TransientError(f"storage did not answer for {self.key!r}: {exc}") from exc


def _from_client_error(key: str, response: dict[str, Any]) -> Exception:
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _MISSING_CODES or status == 404:
        return NotFound(f"file {key!r} is not in storage")
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return TransientError(f"storage failed for {key!r}: {code or status}")
    return PermanentError(f"storage refused {key!r}: {code or status}")
