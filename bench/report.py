"""The one table the benchmark prints: a row per figure, with its goal and whether it is met."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    name: str
    figure: str
    goal: str = ""
    met: bool | None = None
    """None when the row has no goal."""


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_of_rounds(ratios: Sequence[float], rounds: str = "rounds") -> tuple[float, str]:
    """The median of paired ratios (each a figure over its bound, taken back to back) and, when
    there are several, their spread to print beside it: " (rounds 0.91-1.05)"."""
    spread = f" ({rounds} {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return median(ratios), spread


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 samples is the 198th)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: ""}[met]


def render(rows: Sequence[Row], notes: Sequence[str]) -> str:
    header = ("section", "system / measure", "figure", "goal", "")
    cells = [header, *((r.section, r.name, r.figure, r.goal, verdict(r.met)) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *(f"* {note}" for note in notes)])
