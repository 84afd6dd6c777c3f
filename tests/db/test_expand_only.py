"""Migrations only expand the schema, so that a release runs on the schema of any later one (a
rolling deploy, a rollback): nothing an older release reads or writes is dropped, renamed,
retyped or made mandatory. A contracting change ships as its own migration in a release after
every release that used the old shape is gone, and is marked `-- contract:` with the reason."""

from __future__ import annotations

import re

import pytest

from app.db.migrate import available

# What breaks a release that still uses the old shape.
CONTRACTING = {
    r"\bDROP\s+(TABLE|COLUMN|VIEW|TYPE|FUNCTION|SCHEMA)\b": "drops what an older release may use",
    r"\bRENAME\b": "renames what an older release names",
    r"\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b": "changes a column's type under an older release",
    r"\bALTER\s+COLUMN\s+\S+\s+SET\s+NOT\s+NULL\b": "makes a column an older release leaves empty mandatory",
    r"\bADD\s+COLUMN\s+(IF\s+NOT\s+EXISTS\s+)?\S+\s+[^,;]*\bNOT\s+NULL\b(?![^,;]*\bDEFAULT\b)":
        "adds a mandatory column without a default: an older release's INSERT fails",
    r"\bTRUNCATE\b": "empties a table",
}


def contracting_statements(sql: str) -> list[str]:
    """Each statement of `sql` that contracts the schema, with why; `-- contract:` exempts one."""
    found = []
    for statement in sql.split(";"):
        code = "\n".join(line.split("--", 1)[0] for line in statement.splitlines())
        if "-- contract:" in statement:
            continue
        for pattern, why in CONTRACTING.items():
            if re.search(pattern, code, re.IGNORECASE):
                found.append(f"{' '.join(code.split())[:100]}: {why}")
    return found


@pytest.mark.parametrize("migration", available(), ids=lambda m: m.version)
def test_every_migration_only_expands(migration: object) -> None:
    from app.db.migrate import Migration

    assert isinstance(migration, Migration)
    assert contracting_statements(migration.sql) == []


@pytest.mark.parametrize("sql", [
    "ALTER TABLE documents DROP COLUMN ocr_text",
    "ALTER TABLE documents RENAME COLUMN ocr_text TO text",
    "ALTER TABLE documents ALTER COLUMN status TYPE int USING 0",
    "ALTER TABLE documents ALTER COLUMN mime_type SET NOT NULL",
    "ALTER TABLE documents ADD COLUMN owner text NOT NULL",
    "DROP TABLE job_outbox",
])
def test_the_check_finds_what_contracts(sql: str) -> None:
    assert contracting_statements(sql)


@pytest.mark.parametrize("sql", [
    "ALTER TABLE documents ADD COLUMN owner text",
    "ALTER TABLE documents ADD COLUMN owner text NOT NULL DEFAULT 'x'",
    "ALTER TABLE intake_requests DROP CONSTRAINT IF EXISTS intake_requests_status_check",
    "CREATE INDEX documents_owner ON documents (owner)",
    "-- contract: ocr_text unused since 0.3\nALTER TABLE documents DROP COLUMN ocr_text",
])
def test_the_check_lets_expansions_and_marked_contractions_pass(sql: str) -> None:
    assert contracting_statements(sql) == []
