"""The one address every server of pytest_guards listens on: loopback, never reachable from the network."""

from __future__ import annotations

from typing import Final

__all__ = ["HOST"]

HOST: Final = "127.0.0.1"
