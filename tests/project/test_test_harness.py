"""The test suite's own honesty (issue #10, item 14): under `CI=true` a missing tool fails the
run instead of skipping it, and the tests look for models where GATEWAY_MODELS__DIR says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import missing_tool
from ..deploy import test_deploy

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TOOLS = """
import sys

class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("locust", "schemathesis"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, _Hide())
"""


def test_missing_tool_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        missing_tool("no such tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing_tool("no such tool")


@pytest.mark.parametrize("ci,outcome", [("", pytest.skip.Exception),
                                        ("true", pytest.fail.Exception)])  # fmt: skip
def test_deploy_tool_check_fails_under_ci(ci: str, outcome: type, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl, hadolint, ... on it
    with pytest.raises(outcome):
        test_deploy._require("kubernetes-validate-that-does-not-exist")


@pytest.mark.parametrize("module", ["tests.deploy.test_loadtest", "tests.api.test_schema_fuzz"])
def test_missing_python_tool_fails_collection_under_ci(module: str, tmp_path: Path) -> None:
    """Hide locust / schemathesis: locally the module is skipped, under CI=true it fails."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(BLOCK_TOOLS)
    env = {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{ROOT}", "CI": "true",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # fmt: skip
    target = module.replace(".", "/") + ".py"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "pytest_timeout",
                           "--co", target], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "CI=true" in proc.stdout, proc.stdout[-2000:]


def test_tests_find_models_where_gateway_models_dir_says(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_MODELS__DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "import tests.scheduler.test_faults as t; print(t.CACHE)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(tmp_path)


@pytest.mark.parametrize("reference,hypothesis", [
    ("The quick brown fox.", "the quick brown fox"),
    ("The quick brown fox.", "a quick brown box jumps"),
    ("Turn the volume down, please.", "turn volume down please now"),
    ("It's a well-known fact.", "its a well known fact"),
    ("one two three", ""),
])  # fmt: skip
def test_wer_scorer_agrees_with_jiwer(reference: str, hypothesis: str) -> None:
    """The tests and the benchmarks score transcripts with one scorer (tests/support/wer.py,
    no jiwer at run time); jiwer, an independent implementation, must agree on the same words."""
    import jiwer

    from ..support.wer import wer, words

    expected = jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))
    assert wer(reference, hypothesis) == pytest.approx(expected)
    assert wer("Hello, World!", "hello world") == 0.0  # case and punctuation are not errors


# One real round trip per front door stays out of the `slow` mark, so `make test-fast` still
# fails when a model path breaks.
FRONT_DOORS = {
    "HTTP speech and transcription": ("api.test_api_roundtrip", "test_speech_default_is_mp3_and_round_trips"),
    "Wyoming": ("wyoming.test_wyoming", "test_home_assistant_session_one_connection_after_another"),
    "Realtime": ("realtime.test_realtime", "test_turn_detection_null_with_explicit_commits"),
}  # fmt: skip


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_fast_subset_keeps_a_round_trip_per_front_door(door: str) -> None:
    import importlib

    module_name, test_name = FRONT_DOORS[door]
    module = importlib.import_module(f"tests.{module_name}")
    marks = [*getattr(module, "pytestmark", []), *getattr(getattr(module, test_name), "pytestmark", [])]
    assert "slow" not in {m.name for m in marks}, f"{door}: {module_name}::{test_name} is marked slow"
