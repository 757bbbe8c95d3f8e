"""`python -m benchmarks sharing|report|gpu [--quick] [--out PATH] [--md PATH]`, from the
checkout's root (or anywhere, with the checkout on PYTHONPATH)."""

from __future__ import annotations

import argparse
import sys

from . import DOCS, INSTALL_HINT, plots_available


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="benchmarks (docs/benchmarks.md, docs/benchmarks-gpu.md)",
    )
    p.add_argument("name", choices=["sharing", "report", "gpu"])
    p.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    p.add_argument(
        "--out",
        default=None,
        help="report: output folder (default: the checkout's docs/; --quick: a temporary "
        "folder); sharing: folder or .json file; gpu: the JSON file",
    )
    p.add_argument("--md", default=None, help="gpu: also write the Markdown report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gateway.config import Settings
    from gateway.logs import setup

    setup("WARNING", "text")  # as the `gateway` command's client commands log

    if args.name == "sharing":
        from .sharing import main as sharing_main

        return sharing_main(args, Settings())
    if args.name == "report":
        if not plots_available():
            print(INSTALL_HINT, file=sys.stderr)
            return 2
        from .report import main as report_main

        return report_main(args, Settings())
    from .gpu import main as gpu_main  # raw libraries vs the gateway on this machine's GPU

    gpu_argv = ["--out", str(args.out or DOCS / "benchmarks-gpu.json")]
    gpu_argv += ["--quick"] if args.quick else []
    gpu_argv += ["--md", str(args.md)] if args.md else []
    return gpu_main(gpu_argv)


if __name__ == "__main__":
    raise SystemExit(main())
