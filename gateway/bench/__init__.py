"""Benchmarks: `gateway bench sharing` (interactive latency under batch load, per layout) and
`gateway bench report` (docs/benchmarks.md with plots). See docs/benchmarks.md."""

from __future__ import annotations

from typing import Any


def run_bench(args: Any, settings: Any) -> int:
    """Entry point of `gateway bench NAME [--quick] [--out PATH]`."""
    if args.name == "sharing":
        from .sharing import main

        return main(args, settings)
    if args.name == "report":
        from .report import main as report_main

        return report_main(args, settings)
    raise SystemExit(f"unknown benchmark {args.name!r}; use sharing or report")
