"""Benchmarks: `gateway bench sharing` (interactive latency under batch load, per layout),
`gateway bench report` (docs/benchmarks.md with plots) and `gateway bench gpu` (the GPU lane
against the raw libraries on the same GPU: docs/benchmarks-gpu.md)."""

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
    if args.name == "gpu":  # raw libraries vs the gateway on this machine's GPU
        from .gpu import main as gpu_main

        argv = ["--out", str(args.out or "docs/benchmarks-gpu.json")]
        argv += ["--quick"] if args.quick else []
        argv += ["--md", str(args.md)] if args.md else []
        return gpu_main(argv)
    raise SystemExit(f"unknown benchmark {args.name!r}; use sharing, report or gpu")
