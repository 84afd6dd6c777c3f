"""Configuration: the settings read once from the environment at the entry point, the queue
table, and URL checks. Everything below it (queue, db, providers) receives what it needs from
here; nothing else reads `os.environ`."""

from app.config.paths import PROJECT_ROOT
from app.config.queue_table import QueueConfig, QueueTable, RetryPolicy, UnknownQueue
from app.config.settings import Settings, SettingsError
from app.config.urls import check_url, redact_url

__all__ = ["PROJECT_ROOT", "QueueConfig", "QueueTable", "RetryPolicy", "Settings", "SettingsError",
           "UnknownQueue", "check_url", "redact_url"]
