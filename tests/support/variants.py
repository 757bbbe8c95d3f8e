"""A Kokoro model variant made by the test itself from the cached source file, so a test checks
what the registry's converter writes now rather than a file pulled earlier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.registry.manifest import VariantSpec

from ..conftest import missing_tool


def made_variant(
    tmp_path_factory: pytest.TempPathFactory, spec: VariantSpec, make: Callable[[Path, Path], object]
) -> Path:
    """`make(source, out)` run on kokoro's `spec.source_file` into a fresh folder; skipped (a
    failure under CI) when the source file was never pulled."""
    src = Settings().models.dir / "kokoro" / (spec.source_file or "")  # honours GATEWAY_MODELS__DIR
    if not src.is_file():
        missing_tool(f"kokoro's {spec.source_file} is not made (gateway models pull kokoro)")
    out = tmp_path_factory.mktemp("variant") / spec.name
    make(src, out)
    return out
