"""How a number or a list reads in a generated sentence: the one wording the answer, the claims and every report
section share. A leaf: it imports nothing of the project, so the report and its sections (a layer below it) both
import it."""

from __future__ import annotations

from collections.abc import Sequence


def join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c' ('' for none): the one list-in-a-sentence of every report text."""
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def fmt_p(p: float) -> str:
    """A p-value as a sentence gives it: `p=0.03`, two significant digits; `p<0.001` below that."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"
