"""Local storage reads only regular files inside its directory, and nothing blocks shutdown.

A FIFO under the storage directory used to block two threads of the default executor in
open() for good; the job's timeout cancelled the task but not the thread, and the process then
hung on SIGTERM. Now such a file is refused at once, and a thread that blocks anyway (any other
cause) no longer holds the process past SHUTDOWN_TIMEOUT_MS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import NotFound, PermanentError
from app.jobs.resources import Resources
from app.providers.storage import LocalStorage
from tests.fakes import documents as files
from tests.support.worker import WorkerProcess, in_process_worker, subprocess_env, wait_for_runs

MAX = 1_000


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    """A storage directory holding one of each kind of thing a key can name."""
    root = tmp_path / "storage"
    (root / "org").mkdir(parents=True)
    (root / "org" / "ok.pdf").write_bytes(b"%PDF-1.7 fine")
    (root / "org" / "big.bin").write_bytes(b"x" * (MAX + 1))
    os.mkfifo(root / "org" / "pipe")
    (root / "org" / "dir").mkdir()
    (root / "org" / "inside-link").symlink_to(root / "org" / "ok.pdf")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "org" / "outside-link").symlink_to(tmp_path / "secret.txt")
    (root / "org" / "dev-link").symlink_to("/dev/zero")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "org" / "sock"))
    return LocalStorage(root)


async def test_a_regular_file_and_a_symlink_inside_the_directory_are_read(store: LocalStorage) -> None:
    """What the web app stored is read, also through a link that stays inside the directory."""
    assert await store.get("org/ok.pdf", max_bytes=MAX) == b"%PDF-1.7 fine"
    assert await store.get("org/inside-link", max_bytes=MAX) == b"%PDF-1.7 fine"


@pytest.mark.parametrize(("key", "reason"), [
    ("org/pipe", "not a regular file (a FIFO)"),
    ("org/sock", "not a regular file"),
    ("org/dir", "not a regular file (a directory)"),
    ("org/outside-link", "outside the storage directory"),
    ("org/dev-link", "outside the storage directory"),
    ("../secret.txt", "outside the storage directory"),
    ("/etc/passwd", "outside the storage directory"),
    ("org/../../secret.txt", "outside the storage directory"),
    ("", "outside the storage directory"),
    ("org/ok.pdf\x00.png", "not a usable path"),
    ("org/" + "a" * 5000, "not a usable path"),
    ("org/big.bin", "above DOCUMENT_MAX_BYTES=1000"),
])
async def test_anything_but_a_regular_file_inside_the_directory_is_refused_at_once(
        store: LocalStorage, key: str, reason: str) -> None:
    """FIFOs, sockets, directories, devices, paths and links leading out, NUL-bearing and
    over-long keys and oversized files fail permanently, naming the key, without blocking."""
    async with asyncio.timeout(2):
        with pytest.raises(PermanentError, match=reason.replace("(", r"\(").replace(")", r"\)")) as caught:
            await store.get(key, max_bytes=MAX)
    assert not isinstance(caught.value, NotFound) or reason == "not in storage"
    assert repr(key[:20])[1:-1] in str(caught.value)


async def test_a_missing_file_is_not_found(store: LocalStorage) -> None:
    """A key with nothing behind it is NotFound (a permanent error), as before."""
    with pytest.raises(NotFound, match="not in storage"):
        await store.get("org/missing.pdf", max_bytes=MAX)


async def test_put_replaces_a_fifo_instead_of_blocking_on_it(store: LocalStorage) -> None:
    """Writing goes to a new file renamed over the key, so a FIFO at the key cannot block it."""
    async with asyncio.timeout(2):
        await store.put("org/pipe", b"now a file")
    assert await store.get("org/pipe", max_bytes=MAX) == b"now a file"


async def test_a_document_stored_as_a_fifo_is_dead_lettered_quickly_with_the_reason(
        settings: Settings, res: Resources) -> None:
    """A documents row whose storage key names a FIFO fails on its first attempt within seconds;
    the dead letter and the row say the file is not a regular file."""
    await files.add_document(res, "fifo-doc", None)
    os.makedirs(settings.storage.dir / "org-1", exist_ok=True)
    os.mkfifo(settings.storage.dir / "org-1" / "fifo-doc")
    async with in_process_worker(settings, ["document-processing"]):
        queued = await res.enqueuer.enqueue("process_document", {"documentId": "fifo-doc", "orgId": "org-1"})
        assert queued is not None
        outcome = await res.enqueuer.job(queued.job_id, "document-processing").wait(timeout_s=5, poll_delay=0.02)
    assert not outcome.success
    [letter] = await res.dlq.list()
    assert letter.attempts == 1 and "not a regular file (a FIFO)" in letter.error_message
    assert "'org-1/fifo-doc'" in letter.error_message


async def test_sigterm_ends_a_worker_whose_job_blocks_a_thread_within_the_shutdown_timeout(
        make_env: Callable[..., dict[str, str]], res: Resources) -> None:
    """A job blocked in a thread for good is cancelled at SHUTDOWN_TIMEOUT_MS and the process
    exits 0 shortly after, instead of waiting for the thread forever."""
    worker = WorkerProcess(subprocess_env(make_env(shutdown_timeout_ms=1000)), ("--queues", "intake-routing"))
    await worker.start()
    try:
        await worker.wait_ready()
        await res.enqueuer.enqueue("block_thread", {"tag": "stuck"}, queue="intake-routing")
        await wait_for_runs(res, "stuck", "start", 1)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        worker.signal(signal.SIGTERM)
        assert await worker.wait(timeout_s=20) == 0
        assert loop.time() - asked < 6, "shutdown waited for the blocked thread"
        assert worker.events("threads_abandoned_at_exit")
    finally:
        if worker.proc is not None and worker.proc.returncode is None:
            worker.signal(signal.SIGKILL)
            await worker.wait(10)
