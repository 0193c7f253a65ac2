#!/usr/bin/env python3
"""Test cache TTL expiration and regeneration"""

import time

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL


def test_ttl_expiration():
    """Test that cache entries expire after TTL"""

    # Create cache with short TTL for testing
    cache = LRUCacheWithTTL(max_size=100, ttl_seconds=5)

    # Set value
    cache.set("test_key", "test_value")
    print("✓ Set cache entry")

    # Get immediately
    value = cache.get("test_key")
    assert value == "test_value"
    print("✓ Cache hit (fresh)")

    # Wait for TTL to expire
    print("  Waiting 6 seconds for TTL expiration...")
    time.sleep(6)

    # Try to get expired entry
    value = cache.get("test_key")
    assert value is None
    print("✓ Cache miss (expired)")

    # Verify regeneration works
    cache.set("test_key", "new_value")
    value = cache.get("test_key")
    assert value == "new_value"
    print("✓ Cache regeneration successful")

    print("\n✓ All TTL tests passed")

if __name__ == '__main__':
    test_ttl_expiration()
