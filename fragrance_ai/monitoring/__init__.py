"""The monitoring pack shipped with the package: Prometheus rules, their promtool tests, a Grafana dashboard.

The files are plain data (``guards.rules.yml``, ``guards.rules.test.yml``, ``grafana-dashboard.json``);
this module only says where they are, so that deployments and tests load the very files the wheel
ships. It must not import the guards or prometheus_client.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DASHBOARD_FILE", "RULES_FILE", "RULES_TEST_FILE", "dashboard_path", "rules_path", "rules_test_path"]

RULES_FILE = "guards.rules.yml"
RULES_TEST_FILE = "guards.rules.test.yml"
DASHBOARD_FILE = "grafana-dashboard.json"


def _path(name: str) -> Path:
    """A shipped file as a filesystem path (Prometheus and promtool need a real file, not a resource)."""
    resource = resources.files(__package__).joinpath(name)
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(
            f"monitoring file {name!r} is not on the filesystem (found {resource!r}); "
            "install fragrance_ai unpacked (not from a zip) or copy the file out with importlib.resources"
        )
    return path


def rules_path() -> Path:
    """The Prometheus alerting and recording rules (``rule_files:`` entry, ``promtool check rules``)."""
    return _path(RULES_FILE)


def rules_test_path() -> Path:
    """The promtool unit tests of the rules (``promtool test rules``); they name the rules file beside them."""
    return _path(RULES_TEST_FILE)


def dashboard_path() -> Path:
    """The Grafana dashboard JSON (provision it, or import it through Grafana's UI)."""
    return _path(DASHBOARD_FILE)
