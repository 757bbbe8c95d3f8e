"""Benchmarks, run from a checkout (they are not in the wheel): `python -m benchmarks sharing`
(interactive latency under batch load, per layout), `python -m benchmarks report` (docs/
benchmarks.md with plots) and `python -m benchmarks gpu` (the GPU lane against the raw libraries
on the same GPU: docs/benchmarks-gpu.md). Sections that run alone have their own
`python -m benchmarks.<module>`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# Benchmarks only ever run from a checkout, so the checkout is found from this package itself
# (the folder that holds benchmarks/, docs/ and tests/), whatever the working directory.
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

INSTALL_HINT = (
    "`python -m benchmarks report` draws its plots with matplotlib, which the `bench` extra "
    "installs: pip install -e '.[bench]'"
)


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a `python -m benchmarks.<module>` child: the checkout first on
    PYTHONPATH (benchmarks/ is not installed), whatever the child's working directory."""
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    return base


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None
