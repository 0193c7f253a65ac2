"""Production guards for LLM services: JSON hard guard, circuit breaker, LRU+TTL cache, health check."""

__version__ = "0.1.0"
