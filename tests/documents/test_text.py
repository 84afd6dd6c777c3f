"""Text as PostgreSQL stores it (app/documents/text.py): no NUL or control characters, tidy lines."""

from __future__ import annotations

import pytest

from app.documents.text import sanitize


@pytest.mark.parametrize(("raw", "clean"), [
    ("a\x00b", "ab"),
    ("line\r\nnext\rlast", "line\nnext\nlast"),
    ("tab\tkept\x07\x1b bell gone", "tab\tkept bell gone"),
    ("para\n\n\n\n\nnext  \n", "para\n\nnext"),
])
def test_sanitize_removes_nul_and_control_characters(raw: str, clean: str) -> None:
    """Text stored in PostgreSQL has no NUL or control characters and tidy blank lines."""
    assert sanitize(raw) == clean
