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
    (floor, floor_x, _, _), (warm, warm_x, warm_jwt, warm_p99) = summarize(
        rounds, ["floor", "sidecar-warm"]
    )
    assert floor_x == "1.00 (1.00-1.00)"
    assert warm_x == "0.80 (0.80-0.90)"
    assert warm_jwt == ""  # no jwt_authn runs
    assert warm_p99 == "0.80 (0.80-0.90)"  # row() makes p99 proportional to rps
    assert (warm.rps, warm.p99_ms, warm.errors, warm.cpu_us) == (900, 9.0, 3, 600.0)
    assert floor.cpu_us != floor.cpu_us  # NaN: no authorizer process measured


def test_a_single_round_gives_plain_ratios() -> None:
    rounds = [{"floor": row("floor", 1000), "jwt_authn": row("jwt_authn", 4000)}]
    (_, x_floor, x_jwt, _), (_, jwt_x_floor, _, _) = summarize(rounds, ["floor", "jwt_authn"])
    assert (x_floor, x_jwt, jwt_x_floor) == ("1.00", "0.25", "4.00")


def test_ratios_are_against_the_faster_floor_of_each_round() -> None:
    """Two floors (sync and aio): each round's ratios use whichever answered more that round."""
    rounds = [
        {"floor-sync": row("floor-sync", 1000), "floor-aio": row("floor-aio", 500),
         "warm": row("warm", 900)},
        {"floor-sync": row("floor-sync", 800), "floor-aio": row("floor-aio", 1000),
         "warm": row("warm", 700)},
    ]  # fmt: skip
    floors = ("floor-sync", "floor-aio")
    sync, aio, warm = summarize(rounds, [*floors, "warm"], floors)
    assert sync[1] == "0.90 (0.80-1.00)"
    assert aio[1] == "0.75 (0.50-1.00)"
    assert warm[1] == "0.80 (0.70-0.90)"
