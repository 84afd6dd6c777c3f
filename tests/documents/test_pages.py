"""What a stored file is (app/documents/pages.py): read from its first bytes, not its name or
declared type."""

from __future__ import annotations

import pytest

from app.documents.pages import sniff
from app.errors import PermanentError


@pytest.mark.parametrize(("head", "kind"), [
    (b"%PDF-1.7\n", "pdf"), (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff\xe0", "jpeg"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
])
def test_file_kind_is_read_from_magic_bytes(head: bytes, kind: str) -> None:
    """The file's first bytes, not its name or declared type, say what it is."""
    assert sniff(head) == kind


def test_unknown_magic_is_an_unsupported_type() -> None:
    """A file that is none of PDF, PNG, JPEG, TIFF is refused by name."""
    with pytest.raises(PermanentError, match="unsupported file type"):
        sniff(b"GIF89a")
