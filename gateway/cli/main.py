"""The `gateway` command's entry: the parser, and commands too small for a module of their own
(doctor, settings). Benchmarks run from a checkout (`python -m benchmarks`) and are not part of
the installed package."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import __version__
from . import local, models, serve

if TYPE_CHECKING:
    from ..config import Settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway",
        description="OpenAI-compatible speech and transcription that share one GPU. Settings come "
        "from GATEWAY_* environment variables (see `gateway settings`).",
    )
    p.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve.add_parser(sub)
    models.add_parser(sub)
    local.add_parsers(sub)

    sub.add_parser("doctor", help="diagnose GPU, CUDA libraries, runtimes and models")
    st = sub.add_parser("settings", help="print every setting with its env var and default")
    st.add_argument("--markdown", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..config import Settings
    from ..logs import setup

    settings = Settings()
    quiet = args.command != "serve"
    setup(
        "WARNING" if quiet else settings.server.log_level,
        "text" if quiet else settings.server.log_format,
    )
    handler = COMMANDS[args.command]
    return int(handler(args, settings) or 0)


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from ..doctor import render
    from ..runtime import Runtime

    verdicts = Runtime(settings).diagnose()  # reads the models folder, never writes to it
    print(render(verdicts))
    return 0


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from ..config import env_vars

    rows = env_vars()
    if args.markdown:
        print("| env var | default | meaning |\n|---|---|---|")
        for env, default, desc in rows:
            print(f"| `{env}` | `{default}` | {desc} |")
    else:
        for env, default, desc in rows:
            print(f"{env}={default}\n    {desc}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": serve.run,
    "models": models.run,
    "speak": local.run_speak,
    "transcribe": local.run_transcribe,
    "doctor": _cmd_doctor,
    "settings": _cmd_settings,
}
