"""Benchmarks: `gateway bench sharing` (interactive latency under batch load, per layout) and
`gateway bench report` (docs/benchmarks.md with plots). See docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

INSTALL_HINT = (
    "`gateway bench report` draws its plots with matplotlib, which the `bench` extra installs: "
    "pip install 'gateway[bench]' (in a checkout: pip install -e '.[bench]')"
)


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def run_bench(args: Any, settings: Any) -> int:
    """Entry point of `gateway bench NAME [--quick] [--out PATH]`."""
    if args.name == "sharing":
        from .sharing import main

        return main(args, settings)
    if args.name == "report":
        if not plots_available():
            print(INSTALL_HINT, file=sys.stderr)
            return 2
        from .report import main as report_main

        return report_main(args, settings)
    raise SystemExit(f"unknown benchmark {args.name!r}; use sharing or report")
