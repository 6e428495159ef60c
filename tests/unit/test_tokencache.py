"""The verified-token cache: entries die at their expiry, the oldest makes room."""

from __future__ import annotations

from extauthz.identity.tokencache import ExpiringCache


def test_an_entry_lives_until_its_expiry_and_not_a_moment_longer() -> None:
    cache: ExpiringCache[str] = ExpiringCache(10)
    cache.put("t", "claims", expires=100.0)
    assert cache.get("t", now=99.999) == "claims"
    assert cache.get("t", now=100.0) is None
    assert len(cache) == 0  # the expired entry was dropped on sight


def test_a_full_cache_evicts_the_oldest_entry() -> None:
    cache: ExpiringCache[int] = ExpiringCache(3)
    for i in range(3):
        cache.put(f"t{i}", i, expires=1e9)
    cache.get("t0", now=0)  # a hit does not make an entry younger (oldest-first)
    cache.put("t3", 3, expires=1e9)
    assert len(cache) == 3
    assert cache.get("t0", now=0) is None
    assert [cache.get(f"t{i}", now=0) for i in (1, 2, 3)] == [1, 2, 3]


def test_putting_a_key_again_replaces_it_without_evicting_another() -> None:
    cache: ExpiringCache[int] = ExpiringCache(2)
    cache.put("a", 1, expires=10)
    cache.put("b", 2, expires=10)
    cache.put("a", 3, expires=20)
    assert (cache.get("a", now=15), cache.get("b", now=5)) == (3, 2)


def test_clear_and_a_size_of_zero_is_one() -> None:
    cache: ExpiringCache[int] = ExpiringCache(0)
    cache.put("a", 1, expires=10)
    cache.put("b", 2, expires=10)
    assert len(cache) == 1
    cache.clear()
    assert cache.get("b", now=0) is None
