"""MetricsProbe: read guard metrics in tests, as values and as changes since the test began.

It reads any source of Prometheus metric families: an in-process ``CollectorRegistry`` (the
``guard_metrics`` fixture) or the text of a live service's ``/metrics`` (pre-promotion checks).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricNotFoundError", "MetricsProbe"]

_Key = tuple[str, frozenset[tuple[str, str]]]


class MetricNotFoundError(AssertionError):
    """No sample matches a metric name and labels; the message lists what does exist."""


class MetricsProbe:
    """Values of metric samples, and their change since :meth:`mark` (taken when the system was built)."""

    def __init__(self, source: CollectorRegistry | Callable[[], Iterable[Metric]]) -> None:
        if isinstance(source, CollectorRegistry):
            registry = source
            self.registry: CollectorRegistry | None = registry
            self._collect: Callable[[], Iterable[Metric]] = registry.collect
        else:
            self.registry = None
            self._collect = source
        self._baseline: dict[_Key, float] = {}

    @classmethod
    def from_text(cls, fetch: Callable[[], str]) -> MetricsProbe:
        """A probe over Prometheus exposition text, e.g. ``lambda: httpx.get(url + "/metrics").text``."""
        return cls(lambda: text_string_to_metric_families(fetch()))

    def _samples(self) -> dict[_Key, float]:
        out: dict[_Key, float] = {}
        for family in self._collect():
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return out

    @staticmethod
    def _match(samples: dict[_Key, float], name: str, labels: dict[str, str]) -> list[float]:
        wanted = set(labels.items())
        return [v for (n, ls), v in samples.items() if n == name and wanted <= ls]

    def mark(self) -> None:
        """Take the baseline that :meth:`delta` measures from."""
        self._baseline = self._samples()

    def value(self, name: str, **labels: str) -> float:
        """The sample's current value (summed over series when labels leave some out)."""
        samples = self._samples()
        found = self._match(samples, name, labels)
        if not found:
            raise MetricNotFoundError(self._explain(samples, name, labels))
        return sum(found)

    def delta(self, name: str, **labels: str) -> float:
        """How much the sample changed since the baseline (a series born since counts from 0)."""
        now = self.value(name, **labels)
        return now - sum(self._match(self._baseline, name, labels))

    def names(self) -> set[str]:
        return {n for n, _ in self._samples()}

    def _explain(self, samples: dict[_Key, float], name: str, labels: dict[str, str]) -> str:
        shown = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        series = sorted(
            "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(ls)) + "}" for n, ls in samples if n == name
        )
        if series:
            return f"no sample {name}{shown}; {name} has: {', '.join(series)}"
        close = difflib.get_close_matches(name, sorted({n for n, _ in samples}), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"no metric named {name}{hint}"
