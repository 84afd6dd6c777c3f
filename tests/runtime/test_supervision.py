"""The supervision files agree with the process: systemd verifies them, timeouts leave room, the
unit's sandboxing rates 2.0 or below, and the worker does its work inside that sandbox."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings
from app.jobs.resources import Resources
from tests.fakes import documents as files
from tests.support.jobs import outcome
from tests.support.relay import tcp_database_url
from tests.support.system import IN_CI, require_binary
from tests.support.unit_confinement import allowed_syscalls, from_unit
from tests.support.worker import NotifySocket, WorkerProcess, subprocess_env

UNIT = PROJECT_ROOT / "systemd" / "workhorse.service"


def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit with empty stderr (paths pointed at this checkout)."""
    analyze = require_binary("systemd-analyze")
    text = UNIT.read_text()
    text = text.replace("/opt/workhorse/.venv/bin/workhorse", str(Path(sys.executable).parent / "workhorse"))
    text = text.replace("WorkingDirectory=/opt/workhorse", f"WorkingDirectory={PROJECT_ROOT}")
    unit = tmp_path / "workhorse.service"
    unit.write_text(text)
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_unit_waits_longer_than_the_shutdown_timeout() -> None:
    """systemd and pm2 give the worker more time to stop than it takes to drain."""
    shutdown_s = Settings.load({}).shutdown_timeout_ms / 1000
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=on-failure" in text
    assert "EnvironmentFile=" in text
    stop = re.search(r"^TimeoutStopSec=(\d+)", text, re.M)
    assert stop is not None and int(stop.group(1)) > shutdown_s
    pm2 = (PROJECT_ROOT / "systemd" / "ecosystem.config.js").read_text()
    kill = re.search(r"kill_timeout:\s*(\d+)", pm2)
    assert kill is not None and int(kill.group(1)) / 1000 > shutdown_s


def test_systemd_exposure_is_at_most_2() -> None:
    """`systemd-analyze security --offline=true` rates the unit's sandboxing 2.0 or below."""
    analyze = require_binary("systemd-analyze")
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for workhorse\.service: (\d+\.\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


_GROUPS = {"@default": ["exit"], "@service": ["read", "@tuning"], "@tuning": ["setpriority", "setrlimit"]}


@pytest.mark.parametrize(("lines", "allowed"), [
    ([], None),
    (["@service"], ["exit", "read", "setpriority", "setrlimit"]),
    (["@service", "~@tuning"], ["exit", "read"]),
    (["@service", "~@tuning", "setpriority"], ["exit", "read", "setpriority"]),
    (["@service", "", "read"], ["exit", "read"]),
])
def test_system_call_filter_lines_combine_as_systemd_combines_them(lines: list[str], allowed: list[str] | None) -> None:
    """An allow list starts with @default; `~` takes names out, a later line puts them back, an
    empty assignment starts over (what the sandbox imposes is what systemd would)."""
    assert allowed_syscalls(lines, _GROUPS) == allowed


@pytest.fixture
def confined(tmp_path: Path, workhorse_home: Path) -> list[str]:
    """The command that runs what follows it under the unit's sandbox, as far as it can be had
    without systemd as PID 1 (tests/support/confine.py); WORKHORSE_HOME is its state directory."""
    analyze = require_binary("systemd-analyze")
    if os.geteuid() != 0:
        reason = "the sandbox's mount and user namespaces need root"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    spec = tmp_path / "confinement.json"
    from_unit(UNIT.read_text(), analyze, writable=[str(workhorse_home)]).dump(spec)
    return [sys.executable, "-m", "tests.support.confine", str(spec), "--"]


def test_the_sandbox_imposes_what_the_unit_asks(confined: list[str], workhorse_home: Path) -> None:
    """Under the sandbox a process has no capabilities, no_new_privs and seccomp filters; root
    alone is mapped; /proc has no system-wide files, /dev only pseudo-devices; the system is
    read-only but the state directory; what the unit refuses fails with an errno (EPERM,
    EAFNOSUPPORT) instead of killing, and setpriority() stays allowed."""
    done = subprocess.run([*confined, sys.executable, "-m", "tests.support.sandbox_probe", str(workhorse_home)],
                          capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["status"] == {"CapEff": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1", "Seccomp": "2"}
    assert seen["uid_map"] == ["0", "0", "1"]
    assert seen["proc_meminfo"] is False
    assert set(seen["dev"]) <= {"null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin",
                                "stdout", "stderr"}
    assert (seen["write_usr"], seen["write_state"], seen["state_mode"]) == (errno.EROFS, 0, "0o600")
    assert (seen["socket_netlink"], seen["socket_inet"]) == (errno.EAFNOSUPPORT, 0)
    assert (seen["sched_setaffinity"], seen["chown"], seen["unshare"]) == (errno.EPERM,) * 3
    assert seen["nice"] == 0


async def test_the_worker_serves_and_ocrs_inside_the_units_sandbox(
        confined: list[str], make_env: Callable[..., dict[str, str]], res: Resources, tmp_path: Path) -> None:
    """Started under the unit's sandbox, the worker tells systemd READY=1 and pings the watchdog
    over NOTIFY_SOCKET, reads a scanned PDF (pdfium) and a PNG with tesseract in its OCR
    processes, and stops on SIGTERM with STOPPING=1 and exit code 0. PostgreSQL is reached over
    TCP, as in production."""
    require_binary("tesseract")
    await files.add_document(res, "scan-1", files.scanned_pdf([["Sandboxed contract clause nine"]]))
    await files.add_document(res, "png-1", files.png(["INVOICE 4711"]))
    env = subprocess_env(make_env(notify_socket=str(tmp_path / "notify.sock"), watchdog_usec=1_000_000,
                                  workhorse_queues="document-processing"))
    async with NotifySocket(tmp_path / "notify.sock") as notify, \
            tcp_database_url(env["DATABASE_URL"]) as database_url:
        worker = WorkerProcess({**env, "DATABASE_URL": database_url}, launcher=confined)
        await worker.start()
        try:
            await notify.wait_for("READY=1", timeout_s=60)
            assert worker.proc is not None
            status = await asyncio.to_thread(Path(f"/proc/{worker.proc.pid}/status").read_text)
            assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status and "CapEff:\t" + "0" * 16 in status
            queued = [await res.enqueuer.enqueue("process_document", {"documentId": doc, "orgId": "org-1"})
                      for doc in ("scan-1", "png-1")]
            results = [await outcome(res, q.job_id, "document-processing", timeout_s=60)
                       for q in queued if q is not None]
            await notify.wait_for("WATCHDOG=1")
            worker.signal(signal.SIGTERM)
            await notify.wait_for("STOPPING=1")
            assert await worker.wait(30) == 0
        finally:
            await worker.stop()
    assert [ok for ok, _ in results] == [True, True], (results, worker.raw[-30:])
    assert notify.heard[0] == "READY=1"
    rows = await res.db.fetch("SELECT ocr_text FROM documents ORDER BY id")
    assert [r["ocr_text"] for r in rows] == ["INVOICE 4711", "Sandboxed contract clause nine"]


def test_tesseract_reads_a_page_with_openmp_threads_inside_the_units_sandbox(
        confined: list[str], workhorse_home: Path) -> None:
    """tesseract itself under the sandbox, with OpenMP's thread team on (the worker's OCR
    processes set OMP_THREAD_LIMIT=1; an operator's tesseract might not): it reads the page."""
    require_binary("tesseract")
    page = workhorse_home / "page.png"
    files.page_image(["Threads read this line"]).save(page)
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    done = subprocess.run([*confined, "tesseract", str(page), "stdout"], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT, env={**env, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Threads read this line"
