"""The benchmark table (harness/table.py): medians, ratios from pairs of the same round."""

from __future__ import annotations

from harness.table import Result, summarize


def row(name: str, rps: float, cpu: float = float("nan")) -> Result:
    return Result(name, rps, p50_ms=rps / 1000, p99_ms=rps / 100, errors=1, cpu_us=cpu)


def test_ratios_pair_runs_of_the_same_round() -> None:
    # The machine was twice as fast in round 2: same-round pairs see 0.8 both times.
    rounds = [
        {"floor": row("floor", 1000), "sidecar-warm": row("sidecar-warm", 800, 500.0)},
        {"floor": row("floor", 2000), "sidecar-warm": row("sidecar-warm", 1600, 700.0)},
        {"floor": row("floor", 1000), "sidecar-warm": row("sidecar-warm", 900, 600.0)},
    ]
    (floor, floor_x, _), (warm, warm_x, warm_jwt) = summarize(rounds, ["floor", "sidecar-warm"])
    assert floor_x == "1.00 (1.00-1.00)"
    assert warm_x == "0.80 (0.80-0.90)"
    assert warm_jwt == ""  # no jwt_authn runs
    assert (warm.rps, warm.p99_ms, warm.errors, warm.cpu_us) == (900, 9.0, 3, 600.0)
    assert floor.cpu_us != floor.cpu_us  # NaN: no authorizer process measured


def test_a_single_round_gives_plain_ratios() -> None:
    rounds = [{"floor": row("floor", 1000), "jwt_authn": row("jwt_authn", 4000)}]
    (_, x_floor, x_jwt), (_, jwt_x_floor, _) = summarize(rounds, ["floor", "jwt_authn"])
    assert (x_floor, x_jwt, jwt_x_floor) == ("1.00", "0.25", "4.00")
