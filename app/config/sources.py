"""Where settings come from: pydantic-settings' own environment source, given a mapping instead
of `os.environ` when the caller has one (tests, a process reading another's environment), and the
queue table's source (config/queues.toml with its environment overrides); plus the comma-separated
list types the runbooks' variables use (`API_TOKEN=a,ro:b`, `TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, IPvAnyNetwork, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from app.config.paths import DEFAULT_QUEUES_FILE
from app.config.queue_table import load_queue_table


def _split_commas(value: object) -> object:
    """`a, b,,c` -> ["a", "b", "c"]: the runbooks' way to write a list in one variable."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# NoDecode: read the variable as text and split it, not as JSON (pydantic-settings' default for a list).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_commas)]
# Addresses and CIDR blocks (`10.0.0.5` is 10.0.0.5/32); a block with host bits set is refused.
NetworkList = Annotated[list[IPvAnyNetwork], NoDecode, BeforeValidator(_split_commas)]


class MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading `environ` instead of the process's: the
    same names, nesting, case rules and parsing."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class QueueTableSource(PydanticBaseSettingsSource):
    """The `queue_table` setting: QUEUES_FILE (config/queues.toml) read with the environment's
    overrides of it (`DOCUMENT_PROCESSING_CONCURRENCY=5`, app/config/queue_table.py)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = {k.upper(): v for k, v in environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole table is one value: see __call__

    def __call__(self) -> dict[str, Any]:
        path = Path(self.environ.get("QUEUES_FILE") or DEFAULT_QUEUES_FILE)
        return {"queue_table": load_queue_table(path, self.environ)}
