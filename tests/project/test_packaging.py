"""What `pip install gateway` gets: the runtime package alone. The benchmarks (which write docs/
and results/ in a checkout), the tests and the docs stay in the checkout, and the runtime never
imports them or a test-only tool."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_ONLY = ("benchmarks", "tests", "jiwer")  # packages the runtime may not import
# what a checkout holds beside its sources (ignored by git)
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "results",
              ".gpu-pack")  # fmt: skip


def _runtime_imports() -> dict[str, set[str]]:
    """Top-level names each module under gateway/ imports (TYPE_CHECKING ones included)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "gateway").rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_runtime_never_imports_benchmarks_tests_or_jiwer() -> None:
    imports = _runtime_imports()
    assert {"fastapi", "numpy"} <= set().union(*imports.values())  # the walk saw the package
    wrong = {
        m: sorted(n & set(CHECKOUT_ONLY)) for m, n in imports.items() if n & set(CHECKOUT_ONLY)
    }
    assert not wrong, f"the installed package would import what only a checkout has: {wrong}"


def _build_wheel(folder: Path) -> Path:
    """`pip wheel .` on a copy of the checkout: setuptools packs whatever an earlier build left
    in build/lib, so a build in the checkout itself could report a stale file or miss one."""
    source = folder / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = folder.glob("gateway-*.whl")
    return wheel


def _checkout_only(names: list[str]) -> list[str]:
    """Files of the wheel that belong to the checkout alone: a benchmark or test module, docs/,
    or anything outside the runtime package and its metadata."""
    return [
        n
        for n in names
        if not (n.startswith("gateway/") or re.match(r"gateway-[^/]+\.dist-info/", n))
        or n.startswith(("gateway/bench/", "gateway/benchmarks/", "gateway/docs/"))
    ]


@pytest.mark.slow  # builds the wheel: 2-3 s quiet, longer on a loaded machine
def test_the_wheel_holds_the_runtime_package_and_no_benchmark_test_or_docs_file(
    tmp_path: Path,
) -> None:
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        assert "gateway/cli/main.py" in names and "gateway/manifest.toml" in names  # the runtime
        assert not _checkout_only(names), _checkout_only(names)
        # and no runtime module builds a path to a checkout's docs/ folder
        sources = {n: wheel.read(n).decode() for n in names if n.endswith(".py")}
    docs_paths = [n for n, text in sources.items() if re.search(r"""/\s*["']docs["']""", text)]
    assert not docs_paths, docs_paths


def test_the_wheel_check_names_what_only_a_checkout_has() -> None:
    """The filter the wheel test relies on, on the names a wheel built before the move held."""
    names = ["gateway/cli/main.py", "gateway-0.1.0.dist-info/RECORD", "gateway/bench/report.py",
             "benchmarks/plots.py", "tests/support/wer.py", "docs/benchmarks.md"]  # fmt: skip
    assert _checkout_only(names) == names[2:]
