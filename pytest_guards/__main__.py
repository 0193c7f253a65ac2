"""``python -m pytest_guards``: the harness's command line (what ``fragrance-ai verify|scenarios|install-tools`` runs)."""

import sys

from pytest_guards.cli import main

sys.exit(main())
