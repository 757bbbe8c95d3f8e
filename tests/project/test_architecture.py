"""Structural rules of the package: front doors (api/, wyoming/, realtime/) never import engines,
the text side (text/) imports no layer above it, no import circle, and no function too complex to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "gateway"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of `gateway` a file imports at run time (TYPE_CHECKING blocks excluded)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.startswith("gateway"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("gateway"):
                    out.add(target)
                    out.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ re-exporting its own modules is not a circle
            if (
                node.startswith(nxt + ".")
                or nxt.startswith(node + ".")
                and "." not in nxt[len(node) + 1 :]
            ):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


# every protocol reaches the models only through tasks/
FRONT_DOORS = ("api", "wyoming", "realtime")
# The scheduler package's own exports (Level) are public; its modules are internals.
FORBIDDEN = ("gateway.engines", "gateway.scheduler.")


def _violations(imports: set[str], modules: set[str]) -> set[str]:
    return {i for i in imports if i in modules and i.startswith(FORBIDDEN)}


def test_front_doors_never_import_engines_or_scheduler_internals() -> None:
    modules = set(_graph())
    paths = [p for door in FRONT_DOORS for p in (ROOT / door).glob("*.py")]
    assert {p.parent.name for p in paths} == set(FRONT_DOORS)
    bad = {p.name: v for p in paths if (v := _violations(_imports(p), modules))}
    assert not bad, bad


def test_front_door_rule_catches_an_engine_import() -> None:
    modules = set(_graph())
    seen = {"gateway.engines.kokoro", "gateway.scheduler.core", "gateway.scheduler",
            "gateway.scheduler.Level", "gateway.tasks.speech"}  # fmt: skip
    assert _violations(seen, modules) == {"gateway.engines.kokoro", "gateway.scheduler.core"}


TEXT_FORBIDDEN = ("gateway.engines", "gateway.scheduler", "gateway.tasks", "gateway.api",
                  "gateway.wyoming", "gateway.realtime")  # fmt: skip


def _text_violations(imports: set[str]) -> set[str]:
    """The text side (normalization, G2P, the word map) is pure text: engines and tasks use it,
    it uses none of them."""
    return {i for i in imports if i.startswith(TEXT_FORBIDDEN)}


def test_text_package_imports_no_engine_scheduler_task_or_front_door() -> None:
    paths = list((ROOT / "text").glob("*.py"))
    assert {"normalize.py", "japanese.py", "text.py", "languages.py"} <= {p.name for p in paths}
    bad = {p.name: v for p in paths if (v := _text_violations(_imports(p)))}
    assert not bad, bad


def test_text_rule_catches_an_engine_import() -> None:
    seen = {"gateway.engines.kokoro", "gateway.tasks", "gateway.text.numbers", "gateway.errors"}
    assert _text_violations(seen) == {"gateway.engines.kokoro", "gateway.tasks"}


def test_no_import_circle() -> None:
    assert _cycle(_graph()) is None, _cycle(_graph())


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_functions_stay_simple() -> None:
    """No function past the complexity, branch and statement thresholds in pyproject.toml (ruff's
    C901, PLR0912, PLR0915): they replace a file-length cap, which split modules by line count
    rather than by job."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
         "--select", "C901,PLR0912,PLR0915", str(ROOT)],
        capture_output=True, text=True, cwd=ROOT.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
