"""The benchmark table: medians per scenario, ratios from pairs measured in the same round."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    note: str = ""
    cpu_us: float = float("nan")  # the authorizer process's CPU time per request


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(rounds: list[dict[str, Result]], order: list[str]) -> list[tuple[Result, str, str]]:
    """Median rows, each with its x-floor and x-jwt_authn ratio as "median (low-high)"."""

    def ratio(name: str, base: str) -> str:
        values = [r[name].rps / r[base].rps for r in rounds if name in r and base in r]
        if not values:
            return ""
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    rows = []
    for name in order:
        runs = [r[name] for r in rounds if name in r]
        merged = Result(
            name,
            median([x.rps for x in runs]),
            median([x.p50_ms for x in runs]),
            median([x.p99_ms for x in runs]),
            sum(x.errors for x in runs),
            runs[0].note,
            median([x.cpu_us for x in runs if not math.isnan(x.cpu_us)]),
        )
        rows.append((merged, ratio(name, "floor"), ratio(name, "jwt_authn")))
    return rows
