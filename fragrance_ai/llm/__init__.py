"""LLM-facing guards: JSON hard guard, circuit breakers, mode controller, backends, ensemble, health."""
