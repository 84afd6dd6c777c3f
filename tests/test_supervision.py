"""The supervision files agree with the process: systemd verifies them, timeouts leave room."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT, Settings
from tests.conftest import require_binary
from tests.support.unit_confinement import allowed_syscalls

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
