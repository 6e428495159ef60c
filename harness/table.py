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


def summarize(
    rounds: list[dict[str, Result]], order: list[str], floors: tuple[str, ...] = ("floor",)
) -> list[tuple[Result, str, str, str]]:
    """Median rows, each with its x-floor rps, x-jwt_authn rps and x-floor p99 ratio as
    "median (low-high)". The floor of a round is the fastest (highest rps) of ``floors`` run in
    that round, so every ratio is against the best trivial server measured beside it."""

    def fmt(values: list[float]) -> str:
        if not values:
            return ""
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    def fastest_floor(r: dict[str, Result]) -> Result | None:
        ran = [r[f] for f in floors if f in r]
        return max(ran, key=lambda x: x.rps) if ran else None

    def x_floor(name: str, p99: bool = False) -> str:
        values = []
        for r in rounds:
            base = fastest_floor(r)
            if name in r and base is not None:
                values.append(r[name].p99_ms / base.p99_ms if p99 else r[name].rps / base.rps)
        return fmt(values)

    def x_jwt(name: str) -> str:
        pairs = [r for r in rounds if name in r and "jwt_authn" in r]
        return fmt([r[name].rps / r["jwt_authn"].rps for r in pairs])

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
        rows.append((merged, x_floor(name), x_jwt(name), x_floor(name, p99=True)))
    return rows
