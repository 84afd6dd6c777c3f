"""Settings: one object from the environment; bad values named (LOG_LEVEL read in the runbooks'
spellings); secrets hidden; docs complete."""

from __future__ import annotations

import pytest

from app.config import Settings, SettingsError, redact_url


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HEALTH_PORT": "abc"}, "HEALTH_PORT"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT"),
        ({"SHUTDOWN_TIMEOUT_MS": "-1"}, "SHUTDOWN_TIMEOUT_MS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"SMTP_SECURE": "maybe"}, "SMTP_SECURE"),
        ({"SLA_MONITOR_CONCURRENCY": "x"}, "SLA_MONITOR_CONCURRENCY"),
        ({"SLA_MONITOR_ATTEMPTS": "0"}, "SLA_MONITOR_ATTEMPTS"),
        ({"QUEUES_FILE": "/nonexistent.toml"}, "QUEUES_FILE"),
        ({"TRUSTED_PROXIES": "10.0.0.1/8"}, "TRUSTED_PROXIES"),  # host bits set: a typo for 10.0.0.0/8?
        ({"TRUSTED_PROXIES": "proxy.internal"}, "TRUSTED_PROXIES"),  # addresses only: a name is not resolved
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], named: str) -> None:
    """Each bad value fails with one line that names the variable."""
    with pytest.raises(SettingsError) as err:
        Settings.load(env)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_queue_table_defaults_and_env_overrides() -> None:
    """The queue table gives the runbook's concurrencies; QUEUE_FIELD variables override them."""
    table = Settings.load({}).queues
    assert {q: c.concurrency for q, c in table.queues.items()} == {
        "document-processing": 3, "document-embedding": 2, "intake-routing": 5, "calendar-sync": 2,
        "scheduling-reminders": 5, "sla-monitor": 2, "scheduling-agent": 3}
    assert table.queue("document-processing").retry.attempts == 3
    assert table.queue("sla-monitor").retry.base_delay_s == 10
    assert table.jobs["send_email"].retry is not None and table.jobs["send_email"].retry.attempts == 5
    custom = Settings.load({"DOCUMENT_PROCESSING_CONCURRENCY": "5", "INTAKE_ROUTING_ATTEMPTS": "7"}).queues
    assert custom.queue("document-processing").concurrency == 5
    assert custom.queue("intake-routing").retry.attempts == 7


def test_secrets_never_print() -> None:
    """Secrets are hidden in repr, and URLs lose their password when shown."""
    s = Settings.load({"SMTP_PASSWORD": "hunter2", "OPENAI_API_KEY": "sk-abc"})
    assert "hunter2" not in repr(s) and "sk-abc" not in repr(s)
    assert redact_url("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_served_queues_subset() -> None:
    """WORKHORSE_QUEUES (or --queues) picks queues; an unknown one is refused by name."""
    s = Settings.load({"WORKHORSE_QUEUES": "sla-monitor, intake-routing"})
    assert s.served_queues() == ["sla-monitor", "intake-routing"]
    assert s.served_queues("calendar-sync") == ["calendar-sync"]
    with pytest.raises(SettingsError, match="nope"):
        s.served_queues("nope")


@pytest.mark.parametrize(("given", "level"), [
    ("warn", "WARNING"), ("WARN", "WARNING"), ("Warn", "WARNING"), ("warning", "WARNING"), ("WARNING", "WARNING"),
    ("error", "ERROR"), ("Error", "ERROR"), ("debug", "DEBUG"), ("DEBUG", "DEBUG"), ("info", "INFO"),
    ("Info", "INFO"), (" info ", "INFO"), ("critical", "CRITICAL"), ("fatal", "CRITICAL"),
])
def test_log_level_accepts_the_runbooks_spellings_in_any_case(given: str, level: str) -> None:
    """`warn`, `warning`, `error`, `debug`, `info` (and friends) in any case mean Python's level."""
    assert Settings.load({"LOG_LEVEL": given}).log.level == level


@pytest.mark.parametrize("given", ["verbose", "warn\x00", "W" * 10_000, "5"])
def test_an_unknown_log_level_names_the_variable(given: str) -> None:
    """Anything else stops start-up with one line naming LOG_LEVEL."""
    with pytest.raises(SettingsError, match=r"^invalid setting LOG_LEVEL"):
        Settings.load({"LOG_LEVEL": given})
