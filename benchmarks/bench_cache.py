"""Benchmark: LRUCacheWithTTL against cachetools.TTLCache guarded by a lock (the usual thread-safe setup).

Both caches hold 1000 entries with the same TTL and the real monotonic clock. Cases:
  * "cache get hit": ``get`` of keys that are present and fresh (goal: ours <= 0.25 x anchor);
  * "cache set with eviction": ``set`` of a new key into a full cache, so every call evicts (goal <= 0.3 x);
  * the same two for cachebox.TTLCache (Rust, its own lock): the floor for these operations, shown as
    cachebox / cachetools+lock beside ours (informative).
"""

from __future__ import annotations

import itertools
import threading
import time
import timeit
from typing import Any

import cachebox
import cachetools

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL

SIZE = 1000
TTL = 600.0
REPEAT = 7


def _best_ns(stmt: str, names: dict[str, Any], number: int) -> float:
    """Best-of-REPEAT nanoseconds per call of ``stmt`` (compiled by timeit, so no wrapper frame on either side)."""
    return min(timeit.repeat(stmt, globals=names, number=number, repeat=REPEAT)) / number * 1e9


def _get_hit(number: int) -> dict[str, object]:
    ours: LRUCacheWithTTL[int, int] = LRUCacheWithTTL(SIZE, TTL, start_cleanup=False)
    anchor: cachetools.TTLCache[int, int] = cachetools.TTLCache(SIZE, TTL, timer=time.monotonic)
    lock = threading.Lock()
    for k in range(SIZE):
        ours.set(k, k)
        anchor[k] = k
    keys = itertools.cycle(range(0, SIZE, 7))  # same hit keys for both, spread over the LRU order
    names = {"key": keys.__next__, "ours_get": ours.get, "anchor_get": anchor.get, "lock": lock}
    assert ours.get(7) == 7
    assert anchor.get(7) == 7
    ours_ns = _best_ns("ours_get(key())", names, number)
    anchor_ns = _best_ns("with lock:\n    anchor_get(key())", names, number)
    assert ours.misses == 0, "the hit benchmark must only hit"
    return {"name": "cache get hit", "ours_ns": ours_ns, "anchor_ns": anchor_ns,
            "ratio": ours_ns / anchor_ns, "goal": "<= 0.25"}


def _set_evict(number: int) -> dict[str, object]:
    ours: LRUCacheWithTTL[int, int] = LRUCacheWithTTL(SIZE, TTL, start_cleanup=False)
    anchor: cachetools.TTLCache[int, int] = cachetools.TTLCache(SIZE, TTL, timer=time.monotonic)
    lock = threading.Lock()
    for k in range(SIZE):
        ours.set(k, k)
        anchor[k] = k
    names = {
        "ours_key": itertools.count(SIZE).__next__,  # always new keys: every set evicts the LRU entry
        "anchor_key": itertools.count(SIZE).__next__,
        "ours_set": ours.set,
        "anchor_setitem": anchor.__setitem__,
        "lock": lock,
    }
    ours_ns = _best_ns("ours_set(ours_key(), 0)", names, number)
    anchor_ns = _best_ns("with lock:\n    anchor_setitem(anchor_key(), 0)", names, number)
    assert len(ours) == SIZE, "every measured set must evict"
    assert ours.evictions >= number, "every measured set must evict"
    return {"name": "cache set with eviction", "ours_ns": ours_ns, "anchor_ns": anchor_ns,
            "ratio": ours_ns / anchor_ns, "goal": "<= 0.3"}


def _cachebox_floor(number: int, get: dict[str, object], set_: dict[str, object]) -> list[dict[str, object]]:
    """cachebox's get and set with eviction, each against the same cachetools+lock anchor figure."""
    box: cachebox.TTLCache[int, int] = cachebox.TTLCache(SIZE, TTL)
    for k in range(SIZE):
        box[k] = k
    names = {"key": itertools.cycle(range(0, SIZE, 7)).__next__, "box_get": box.get,
             "new_key": itertools.count(SIZE).__next__, "box_set": box.__setitem__}
    get_ns = _best_ns("box_get(key())", names, number)
    set_ns = _best_ns("box_set(new_key(), 0)", names, number)
    anchor_get, anchor_set = float(get["anchor_ns"]), float(set_["anchor_ns"])  # type: ignore[arg-type]
    return [
        {"name": "cachebox get hit (the floor)", "ours_ns": get_ns, "anchor_ns": anchor_get,
         "ratio": get_ns / anchor_get, "goal": "informative"},
        {"name": "cachebox set with eviction (the floor)", "ours_ns": set_ns, "anchor_ns": anchor_set,
         "ratio": set_ns / anchor_set, "goal": "informative"},
    ]


def run(number: int | None = None) -> list[dict[str, object]]:
    """Measure every case; ``number`` calls per repeat (default 100_000)."""
    n = number or 100_000
    get, set_ = _get_hit(n), _set_evict(n)
    return [get, set_, *_cachebox_floor(n, get, set_)]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<26} ours {row['ours_ns']:8.1f} ns  anchor {row['anchor_ns']:8.1f} ns  "
              f"ratio {row['ratio']:.3f}  (goal {row['goal']})")
