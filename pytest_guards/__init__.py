"""pytest_guards: a pytest plugin and chaos harness for the production guards of LLM services."""
