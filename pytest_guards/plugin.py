"""The pytest plugin: hooks and fixtures only (logic lives in private modules)."""
