"""Measure the whole live suite against a canary on loopback: ``python scripts/live_fault_suite.py [--fast] [VERIFY ARGS]``.

The canary is ``fragrance-ai serve``'s app (the reference config by default, or the tests' fast config)
on a uvicorn thread, its models on a fake LLM server with the control plane, each behind a Toxiproxy
proxy ``canary-<model>`` (toxiproxy-server from .tools/bin). Prints verify's output, its exit code and
the wall time. The README's "Real-time cost" figure comes from this script.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pytest_guards"))

from live_canary import PROXY_NAME, TOKEN, canary, toxiproxy  # the tests' canary, on sys.path above

from pytest_guards.cli import main as verify_main


def main(argv: list[str]) -> int:
    fast = "--fast" in argv
    extra = [a for a in argv if a != "--fast"]
    with toxiproxy() as proxies, canary(overrides=None if fast else {}, proxies=proxies) as (service, fake):
        started = time.monotonic()
        out = io.StringIO()
        code = verify_main(
            ["verify", "--target", service.url, "--llm-control", fake.url, "--control-token", TOKEN,
             "--toxiproxy-url", proxies.url, "--proxy-name", PROXY_NAME, *extra],
            out=out,
        )
        print(out.getvalue())
        print(f"exit {code}, wall {time.monotonic() - started:.1f} s ({'fast' if fast else 'reference'} config)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
