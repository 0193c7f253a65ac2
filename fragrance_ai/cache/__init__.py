"""Caches."""

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL

__all__ = ["LRUCacheWithTTL"]
