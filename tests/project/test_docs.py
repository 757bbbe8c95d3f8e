"""The README stays in step with the code: every setting documented, the two commands true."""

from __future__ import annotations

from pathlib import Path

from gateway.config import env_vars

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for env, default, _ in env_vars():
        assert f"| `{env}` | `{default}` |" in readme, env


def test_readme_set_up_is_the_two_make_targets_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
