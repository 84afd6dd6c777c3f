"""Where the checkout lives, and the configuration files shipped in it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_QUEUES_FILE = PROJECT_ROOT / "config" / "queues.toml"
DEFAULT_CRON_FILE = PROJECT_ROOT / "config" / "cron.toml"
