"""Mean ± std over seeds, the one way every bench report writes it.

A cell always says how many values it rests on: one seed has no spread, so it reads "71.2 (n = 1)", never
"71.2 ± 0.0", which would claim a spread of zero.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable

EMPTY = "–"


def _present(values: Iterable[float | None], scale: float) -> list[float]:
    # A seed that did not produce a value (a run that stopped, a metric a run lacks) is left out, and n says so.
    return [scale * v for v in values if v is not None]


def summary(values: Iterable[float | None], scale: float = 1.0) -> dict:
    """{"mean", "std", "n"} for a JSON report; std is None below two values."""
    values = _present(values, scale)
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def mean_std(values: Iterable[float | None], scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
    """"mean ± std (n = k)", or "value (n = 1)" for a single seed, or "–" for none. `scale` multiplies every value
    (100 for fractions shown as percent); `signed` writes the mean with its sign, for differences."""
    s = summary(values, scale)
    if not s["n"]:
        return EMPTY
    mean = f"{s['mean']:{'+' if signed else ''}.{digits}f}"
    if s["std"] is None:
        return f"{mean} (n = 1)"
    return f"{mean} ± {s['std']:.{digits}f} (n = {s['n']})"
