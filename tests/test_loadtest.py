"""The locust file runs headless against a gateway started here and its thresholds set the exit
code: a short smoke run passes, an impossible threshold fails, and 429 backpressure is counted
apart, not as a failure. Timings are never asserted: thresholds in the passing runs are huge."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bench.server import GatewayProcess

from .conftest import missing_tool

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
LENIENT = ["--p95-speech-ms", "600000", "--p95-voicenote-ms", "600000",
           "--p95-batch-ms", "900000"]  # fmt: skip

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # locust runs against gateway processes


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


if not _installed("locust"):  # skipped locally, a failure under CI=true
    missing_tool("locust is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The default configuration, in its own process (uvicorn on a free loopback port)."""
    with GatewayProcess({}, "loadtest", tmp_path_factory.mktemp("gw")) as gw:
        yield gw


@pytest.fixture(scope="module")
def tight_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One interactive unit may wait: more concurrent sentences than that get 429."""
    env = {"GATEWAY_SCHEDULER__INTERACTIVE__MAX_QUEUE_SIZE": "1"}
    with GatewayProcess(env, "loadtest-tight", tmp_path_factory.mktemp("gw")) as gw:
        yield gw


def locust(host: str, out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
           "--only-summary", "--csv", str(out / "run"), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=out)


def stats(out: Path) -> dict[str, dict[str, str]]:
    with (out / "run_stats.csv").open() as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_smoke_run_passes(gateway: GatewayProcess, tmp_path: Path) -> None:
    r = locust(gateway.base_url, tmp_path, "-u", "3", "-r", "3", "-t", "18s",
               "--batch-seconds", "12", "--max-fail-ratio", "0", *LENIENT)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-4000:]
    assert "all thresholds met" in r.stderr
    rows = stats(tmp_path)
    assert int(rows["Aggregated"]["Request Count"]) >= 1
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert "chat: speech" in rows, rows.keys()  # the chat user spoke at least one sentence


def test_impossible_threshold_fails(tight_gateway: GatewayProcess, tmp_path: Path) -> None:
    r = locust(tight_gateway.base_url, tmp_path, "-u", "1", "-r", "1", "-t", "10s",
               "--p95-speech-ms", "1", "OpenWebUIChatUser")  # fmt: skip
    assert r.returncode != 0, r.stderr[-3000:]
    assert "threshold failed" in r.stderr


def test_backpressure_is_not_a_failure(tight_gateway: GatewayProcess, tmp_path: Path) -> None:
    r = locust(tight_gateway.base_url, tmp_path, "-u", "4", "-r", "4", "-t", "12s",
               "--max-fail-ratio", "0", *LENIENT, "OpenWebUIChatUser")  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-4000:]
    rows = stats(tmp_path)
    pressure = rows.get("chat: speech [429 backpressure]")
    assert pressure is not None and int(pressure["Request Count"]) >= 1, rows.keys()
    assert int(pressure["Failure Count"]) == 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
