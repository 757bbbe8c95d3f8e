"""Observability: /metrics parses as Prometheus text and its series move when requests are served;
the JSON logs carry the request id, honour a caller's X-Request-ID and never hold audio, text,
keys or e-mail addresses."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings
from gateway.logs import setup

from ..conftest import LiveServer

# real requests move the metrics
pytestmark = pytest.mark.slow

KEY = "sk-metrics-SECRETKEY-7d1f"
WRONG_KEY = "sk-wrong-SECRETKEY-0000"
EMAIL = "alice.metrics@example.com"
SPOKEN = "Zebras quietly inspect purple umbrellas today."
FILENAME = "private-FILENAME-marker.wav"
AUTH = {"Authorization": f"Bearer {KEY}"}

# Every family the dashboards and the HPA rely on (GPU ones only appear with a GPU).
EXPECTED = {
    "gateway_http_requests", "gateway_http_request_duration_seconds", "gateway_queue_depth",
    "gateway_queue_wait_seconds", "gateway_unit_run_seconds", "gateway_units",
    "gateway_fallbacks", "gateway_rejections", "gateway_model_loads", "gateway_lane_slots",
    "gateway_lane_busy_slots", "gateway_real_time_factor",
}  # fmt: skip


@pytest.fixture(scope="module")
def logged() -> Iterator[io.StringIO]:
    """Everything the gateway logs while this module runs, configured exactly as `gateway serve`
    does it (gateway.logs.setup: JSON lines, uvicorn's access log off)."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    access_disabled = logging.getLogger("uvicorn.access").disabled
    real_stderr = sys.stderr
    sys.stderr = stream  # setup() binds its handler to sys.stderr
    try:
        setup("INFO", "json")
    finally:
        sys.stderr = real_stderr
    for name in quiet:  # the test's own HTTP client, not the gateway
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access_disabled


@pytest.fixture(scope="module")
def live(logged: io.StringIO) -> Iterator[LiveServer]:
    settings = Settings()
    settings.server.api_keys = KEY
    with LiveServer(settings) as server:
        yield server


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}; also checks it parses. Families with
    no sample yet (a labelled counter nothing has touched) appear as (family name, ()): 0."""
    r = httpx.get(f"{url}/metrics", timeout=30, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        out.setdefault((family.name, ()), 0.0)
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, lbl), v in samples.items()
               if n == name and set(labels.items()) <= set(lbl))  # fmt: skip


def test_metrics_parse_and_move(live: LiveServer) -> None:
    before = scrape(live.url)
    r = httpx.post(f"{live.url}/v1/audio/speech", headers=AUTH, timeout=300,
                   json={"model": "tts-1", "voice": "alloy", "input": SPOKEN,
                         "response_format": "wav"})  # fmt: skip
    assert r.status_code == 200, r.text
    t = httpx.post(f"{live.url}/v1/audio/transcriptions", headers=AUTH, timeout=300,
                   files={"file": (FILENAME, r.content)},
                   data={"model": "whisper-tiny.en"})  # fmt: skip
    assert t.status_code == 200, t.text
    bad = httpx.post(f"{live.url}/v1/audio/speech", headers=AUTH, timeout=30,
                     json={"model": "tts-1", "voice": "alloy", "input": ""})  # fmt: skip
    assert bad.status_code == 400
    after = scrape(live.url)

    families = {name for name, _ in after}
    for family in EXPECTED:
        assert any(n == family or n.startswith(family + "_") for n in families), family

    def moved(name: str, by: float = 1, **labels: str) -> None:
        delta = value(after, name, **labels) - value(before, name, **labels)
        assert delta >= by, f"{name}{labels} moved by {delta}"

    speech, trans = "/v1/audio/speech", "/v1/audio/transcriptions"
    moved("gateway_http_requests_total", route=speech, method="POST", status="200")
    moved("gateway_http_requests_total", route=speech, method="POST", status="400")
    moved("gateway_http_requests_total", route=trans, method="POST", status="200")
    moved("gateway_http_request_duration_seconds_count", 3, method="POST")
    moved("gateway_queue_wait_seconds_count", level="interactive", engine="kokoro")
    moved("gateway_queue_wait_seconds_count", level="interactive", engine="whisper-tiny.en")
    moved("gateway_units_total", engine="kokoro", outcome="ok")
    moved("gateway_units_total", engine="whisper-tiny.en", outcome="ok")
    moved("gateway_unit_run_seconds_count", engine="kokoro")
    moved("gateway_real_time_factor_count", engine="kokoro")
    moved("gateway_real_time_factor_count", engine="whisper-tiny.en")
    moved("gateway_model_loads_total", engine="whisper-tiny.en")
    # no GPU here: every unit ran on the CPU with a reason
    if not live.gateway.scheduler.snapshot().gpu_present:
        moved("gateway_fallbacks_total", 1, engine="kokoro", reason="no_gpu")
    assert value(after, "gateway_queue_depth") == 0  # nothing left waiting
    # the 400 ran no unit: only requests that were served moved the unit counters
    assert value(after, "gateway_units_total", engine="kokoro") - value(
        before, "gateway_units_total", engine="kokoro") >= 1  # fmt: skip


def test_request_id_is_honoured_and_logs_hold_no_secrets(
    live: LiveServer, logged: io.StringIO
) -> None:
    headers = {**AUTH, "X-Request-ID": "trace-abc.123_XYZ", "X-OpenWebUI-User-Email": EMAIL,
               "X-OpenWebUI-User-Name": "Alice Example"}  # fmt: skip
    r = httpx.post(f"{live.url}/v1/audio/speech", headers=headers, timeout=300,
                   json={"model": "tts-1", "voice": "alloy", "input": SPOKEN})  # fmt: skip
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-abc.123_XYZ"
    # not a valid id (spaces, too long): replaced by one of ours, still echoed
    for bad in ("has spaces in it", "x" * 300):
        r = httpx.get(f"{live.url}/v1/audio/models", headers={"X-Request-ID": bad}, timeout=30)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    # a wrong key and an e-mail in a query string
    r = httpx.post(f"{live.url}/v1/audio/speech", timeout=30,
                   headers={"Authorization": f"Bearer {WRONG_KEY}", "X-Request-ID": "rid-401"},
                   json={"model": "tts-1", "voice": "alloy", "input": SPOKEN})  # fmt: skip
    assert r.status_code == 401
    r = httpx.get(f"{live.url}/v1/audio/voices", params={"model": EMAIL}, timeout=30)
    assert r.status_code == 404
    t = httpx.post(f"{live.url}/v1/audio/transcriptions", timeout=300,
                   headers={**AUTH, "X-Request-ID": "rid-stt"},
                   files={"file": (FILENAME, b"not audio at all " * 50)},
                   data={"model": "whisper-tiny.en", "prompt": SPOKEN})  # fmt: skip
    assert t.status_code == 400

    text = logged.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [x for x in lines if x.get("logger") == "gateway.access"]
    assert any(x.get("request_id") == "trace-abc.123_XYZ" and x.get("status") == 200
               and x.get("route") == "/v1/audio/speech" for x in access), access[-5:]  # fmt: skip
    assert any(x.get("request_id") == "rid-401" and x.get("status") == 401 for x in access)
    assert any(x.get("request_id") == "rid-stt" and x.get("status") == 400 for x in access)
    for secret in (KEY, WRONG_KEY, "SECRETKEY", EMAIL, "example.com", SPOKEN, "Zebras",
                   FILENAME, "FILENAME-marker", "Alice Example", "not audio at all"):  # fmt: skip
        assert secret not in text, f"{secret!r} was logged"
    assert "RIFF" not in text and "ID3" not in text  # no audio bytes


def test_grafana_dashboard_uses_exported_metrics(live: LiveServer) -> None:
    """docs/grafana-dashboard.json is valid JSON, covers every area, and names only metrics the
    gateway exports (the GPU families are declared even on a CPU-only machine)."""
    path = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
    dash = json.loads(path.read_text())
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert panels and all(p["targets"] for p in panels)
    exported = {name for name, _ in scrape(live.url)}
    used = set(re.findall(r"\b(gateway_[a-z_]+|DCGM_FI_[A-Z_]+)\b", " ".join(exprs)))
    # a family is exported as e.g. `gateway_units` (+ `_total`) or `x` (+ `_bucket/_sum/_count`)
    missing = {m for m in used
               if m not in exported and re.sub(r"_(total|bucket|sum|count)$", "", m) not in exported}  # fmt: skip
    assert not missing, f"dashboard names metrics the gateway does not export: {missing}"
    for needed in ("gateway_queue_depth", "gateway_queue_wait_seconds_bucket",
                   "gateway_lane_busy_slots", "gateway_fallbacks_total", "DCGM_FI_DEV_FB_USED",
                   "gateway_real_time_factor_sum", "gateway_http_request_duration_seconds_bucket",
                   "gateway_http_requests_total"):  # fmt: skip
        assert needed in used, needed


def test_error_events_count_as_the_status_http_answers() -> None:
    """Wyoming and Realtime count an error event with the status HTTP answers for the same
    domain error: the two maps of kinds to statuses agree."""
    from gateway.api.errors import STATUS as ANSWERED
    from gateway.traffic import STATUS as COUNTED

    assert COUNTED == ANSWERED
