"""`gateway models list | pull | verify` (the model files, here) and `ps | load | unload` (model
control of a running gateway, over HTTP)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..remote import add_commands as add_remote_commands

if TYPE_CHECKING:
    from ..config import Settings


def add_parser(sub: Any) -> None:
    m = sub.add_parser("models", help="list, pull and verify models; ps, load, unload them")
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="known models: present, size, source")
    pull = msub.add_parser("pull", help="assemble or fetch models and verify them")
    pull.add_argument("ids", nargs="*", help="model ids (default: the default bundle)")
    pull.add_argument("--allow-download", action="store_true", help="allow Hugging Face downloads")
    pull.add_argument("--force", action="store_true", help="re-assemble even if present")
    verify = msub.add_parser("verify", help="re-hash model files against the pinned sha256")
    verify.add_argument("ids", nargs="*", help="model ids (default: the bundle and pulled models)")
    add_remote_commands(msub)  # ps | load | unload, on a running gateway


def run(args: argparse.Namespace, settings: Settings) -> int:
    from .. import remote
    from ..registry import cli as models_cli

    if args.models_command in remote.COMMANDS:
        return remote.run(args, settings)
    return models_cli.run(args, settings)
