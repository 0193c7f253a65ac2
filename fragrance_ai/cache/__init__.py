"""The guards' caches: ``LRUCacheWithTTL``, a thread-safe LRU cache with per-entry TTL and single flight."""

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL

__all__ = ["LRUCacheWithTTL"]
