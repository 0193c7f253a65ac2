"""The FastAPI service and the wiring of one guarded system (built once, shared by every request)."""

from __future__ import annotations

from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem

__all__ = ["GuardSystem", "create_app"]
