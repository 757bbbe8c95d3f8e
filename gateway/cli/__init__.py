"""The `gateway` command: `main` parses and dispatches; each group of sub-commands has a module
(serve, models, local: speak and transcribe)."""

from __future__ import annotations

from .main import build_parser, main
from .serve import bind_address

__all__ = ["bind_address", "build_parser", "main"]
