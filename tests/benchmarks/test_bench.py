"""The benchmark generator: its arithmetic and rendering on made-up numbers, checked as a reader
reads the page (each figure with its unit, each goal met / not met). The real end-to-end run,
`python -m benchmarks report --quick`, is `make bench-smoke` (scripts/bench_smoke.py), not a test: it
takes many minutes on 2 cores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks import report, sharing, timings
from benchmarks.client import BatchLoop, JobRecord, summary
from benchmarks.server import CpuTimes, cpu_busy, machine_info, proc_memory

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("sharing", "overhead", "throughput", "memory", "streaming")


# (figure's label starts with, measured value or None when not measured, unit, verdict)
GOALS = (
    ("speech, ~10 s of audio", 1.02, "×", "met"),  # 1.025 raw/gateway, shown to 2 places
    ("speech, default mp3", None, "", "–"),
    ("transcription, 10 s", 1.02, "×", "met"),
    ("transcription, 48–60 s", None, "", "–"),
    ("peak RSS", 0.78, "GiB", "met"),  # 800 MiB
    ("speech p95 under 2 looping batch", 1.09, "×", "met"),  # 1.8 / 1.65
    ("batch transcription rate while speech runs", 50, "%", "not met"),
    ("cores busy", 99, "%", "met"),
)
# (words in the goal line, measured ratio, verdict)
SECTION_GOALS = (
    ("First audio, Wyoming / HTTP", 1.05, "met"),
    ("Transcript p95 under batch load", 1.33, "not met"),
    ("timestamps SSE / plain SSE", 1.04, "not met"),  # the worse of JSON 1.02x and SSE decides
    ("Realtime turn / HTTP call", 0.95, "met"),
    ("Realtime turn p95 under batch load", 1.51, "not met"),
)


def table(md: str, column: str, section: str = "") -> list[dict[str, str]]:
    """The rows of the first Markdown table with this column (after `section`), as
    {header: cell}."""
    lines = md[md.index(section) :].splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and column in cells and lines[i + 1].startswith("|---"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(cells, (c.strip() for c in row.strip("|").split("|")),
                                     strict=True)))  # fmt: skip
            return rows
    raise AssertionError(f"no table with a {column!r} column")


def figure(cell: str, unit: str) -> float | None:
    """The number a reader sees in a cell, when it is followed by `unit`."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*" + re.escape(unit), cell.replace("*", ""))
    return None if m is None else float(m.group(1))


def goal_lines(md: str) -> dict[str, tuple[float, str]]:
    """Each "- <figure>: 1.23x; goal <= 1.1x: met" line as {its text: (1.23, "met")}; with two
    figures before one goal, the goal's verdict belongs to the last."""
    out = {}
    for line in md.splitlines():
        m = re.search(r"([\d.]+)x; goal <= [\d.]+x: (\*\*not met\*\*|met)", line)
        if line.startswith("- ") and m:
            out[line] = (float(m.group(1)), m.group(2).strip("*"))
    return out


def _config(name: str, idle: float, loaded: float) -> dict:
    return {
        "name": name, "label": sharing.CONFIGS[name]["label"],
        "idle": summary([idle, idle * 1.1]), "load": summary([loaded, loaded * 1.2]),
        "idle_runs": [idle], "load_runs": [loaded],
        "ratio_p95": loaded * 1.2 / (idle * 1.1), "ratio_p50": loaded / idle,
        "batch_jobs_finished": 4, "batch_jobs_during_probe": 2, "batch_errors": [],
        "batch_rate_alone": 6.0, "batch_rate_with_speech": 3.0, "batch_rate_ratio": 0.5,
        "speech_duty": 0.6, "cpu_busy": 0.99, "gateway_cpu": 0.97, "others_cpu_load": 0.01,
        "others_cpu_idle": 0.0, "peak_rss_mib": 800.0, "processes": 1,
    }  # fmt: skip


def fake_results() -> dict:
    sh = {
        "params": asdict(sharing.QUICK),
        "quick": True,
        "configs": {"priority": _config("priority", 1.5, 1.5), "fifo": _config("fifo", 1.5, 4.0),
                    "two-servers": _config("two-servers", 1.6, 3.5)},
        "probe": {"text": "The quick brown fox.", "audio_s": 3.6},
    }  # fmt: skip
    sh["verdict"] = sharing.verdict(sh)
    case = {"case": "speech, wav", "audio_s": 10.0, "raw": [4.0], "gateway": [4.1],
            "raw_cpu_median": 7.9, "gateway_cpu_median": 8.0, "cpu_ratio": 1.01,
            "raw_median": 4.0, "gateway_median": 4.1, "ratio": 1.025}  # fmt: skip
    spinning = {"raw_spinning_median": 3.9, "raw_spinning_cpu_median": 9.6,
                "ratio_spinning": 1.051, "cpu_ratio_spinning": 0.833}  # fmt: skip
    level = {"clients": 1, "requests": 2, "errors": [], "wall_s": 3.0, "rps": 0.66, "rtf": 0.4,
             "latency": summary([1.5, 1.5])}  # fmt: skip
    return {
        "quick": True, "date": "2026-01-01 00:00 UTC", "command": "python -m benchmarks report --quick",
        "machine": machine_info(), "load_before": (0.1, 0.2, 0.3), "load_after": (1.0, 0.5, 0.3),
        "memory_idle": {"VmRSS": 700.0, "VmHWM": 720.0},
        "memory_after": {"VmRSS": 750.0, "VmHWM": 800.0},
        "memory_sections": {"overhead": {"VmRSS": 740.0, "VmHWM": 790.0}},
        "overhead": {"cases": [{**case, **spinning}, {**case, "case": "transcription, 10 s clip"}],
                     "load_before": (0.5, 0.4, 0.3), "load_after": (1.25, 0.5, 0.35),
                     "raw_memory": {"VmHWM": 690.0}, "raw_memory_idle": {"VmHWM": 600.0},
                     "threads": {"kokoro": 2, "whisper": 2}},
        "throughput": {"speech": [level, {**level, "clients": 2}],
                       "transcription": [level, {**level, "clients": 2}], "clip_s": 4.0},
        "streaming": {"text_chars": 120, "ttfb": summary([1.0]), "stream_total": summary([3.0]),
                      "full": summary([2.9]), "ttfb_runs": [1.0], "full_runs": [2.9]},
        "gateway_env": {"policy": "priority", "cores": 2, "cpu_slots": 1},
        "sharing": sh, "elapsed_s": 60.0,
    }  # fmt: skip


def test_statistics_and_kernel_readings() -> None:
    s = summary([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["p50"] == 2.5 and 3.8 < s["p95"] < 4.0
    assert summary([])["n"] == 0
    assert cpu_busy(CpuTimes(100, 1000, 0), CpuTimes(250, 1200, 1)) == 0.75
    mem = proc_memory(os.getpid())
    assert mem["VmHWM"] >= mem["VmRSS"] > 0


def test_batch_throughput_counts_overlap_share() -> None:
    loop = BatchLoop("http://unused", [b""], 48.0)
    loop.records = [JobRecord(0, 10, True, 48.0), JobRecord(10, 20, True, 48.0),
                    JobRecord(5, 6, False, 48.0)]  # fmt: skip
    # window [5, 15]: half of each finished job -> 48 s of audio in 10 s
    assert loop.throughput(5, 15) == pytest.approx(4.8)
    assert loop.finished(0, 15) == 1


def test_verdict_and_render_from_fake_numbers(tmp_path: Path) -> None:
    res = fake_results()
    res["wyoming"] = {"reply_chars": 235, "command_s": 3.0,
                      "ttfa": {"wyoming": summary([1.0, 1.1]), "http": summary([1.0, 1.0]),
                               "ratio_p50": 1.05 / 1.0},
                      "stt": {"idle": summary([0.5, 0.6]), "loaded": summary([0.6, 0.8]),
                              "ratio_p95": 0.79 / 0.595}}  # fmt: skip
    res["realtime"] = {"turn_s": 3.0, "text": "Turn it down.", "realtime": summary([0.9, 1.0]),
                       "http": summary([1.0, 1.0]), "loaded": summary([1.2, 1.5]),
                       "ratio_http_p50": 0.95, "ratio_loaded_p95": 1.5 / 0.995}  # fmt: skip
    forms = dict.fromkeys(timings.FORMS, [2.0])
    res["timings"] = {"rounds": 1, "times": forms, "median": dict.fromkeys(forms, 2.0),
                      "ratio_json": 1.02, "ratio_sse": 1.04}  # fmt: skip
    v = res["sharing"]["verdict"]
    assert v["priority_ratio_within_target"] and v["priority_better_than_others"]
    md_path = report.write(res, tmp_path)
    md = md_path.read_text()
    for heading in ("# Benchmarks", "## 1. Overhead", "## 2. Sharing", "## 3. Throughput",
                    "## 4. Memory", "## 5. Streaming"):  # fmt: skip
        assert heading in md
    for name in PLOTS:
        assert f"img/{name}.png" in md
        assert (tmp_path / "img" / f"{name}.png").read_bytes().startswith(PNG)
    assert "| priority |" in md and "| two-servers |" in md
    assert res["machine"]["cpu"] in md
    # the spinning baseline is shown beside the like-for-like one, for the speech case only
    spinning = table(md, "raw wall, spinning")
    assert [r["case"] for r in spinning] == ["speech, wav"]
    assert figure(spinning[0]["raw wall, spinning"], "s") == 3.9
    assert figure(spinning[0]["wall ratio"], "×") == 1.05
    overhead = {r["case"]: r for r in table(md, "CPU ratio")}
    assert figure(overhead["speech, wav"]["CPU ratio"], "×") == 1.01
    after = {r["after"]: r for r in table(md, "VmHWM")}
    assert figure(after["overhead"]["VmRSS"], "GiB") == 0.72
    assert figure(after["overhead"]["VmHWM"], "GiB") == 0.77
    realtime = {r[""]: r for r in table(md, "p50 s", "## 9. Realtime")}
    assert figure(realtime["realtime turn, idle"]["p50 s"], "") == 0.95
    # every figure against its goal: what was measured, in its unit, and met / not met
    rows = {r["figure"]: r for r in table(md, "measured")}
    for name, value, unit, verdict in GOALS:
        row = next((r for label, r in rows.items() if label.startswith(name)), None)
        assert row is not None, f"no goal row for {name!r} in {list(rows)}"
        assert row[""].strip("*") == verdict, (name, row)
        if value is None:
            assert row["measured"] == "not measured", (name, row)
        else:
            assert figure(row["measured"], unit) == pytest.approx(value), (name, row)
            assert figure(row["goal"], unit) is not None, (name, row)  # the goal in that unit
    assert len(rows) == len(GOALS), f"a goal row this test does not know: {list(rows)}"
    # the sections' own goals (Wyoming, word timings, realtime), one line each
    lines = goal_lines(md)
    for name, value, verdict in SECTION_GOALS:
        line = next((v for label, v in lines.items() if name in label), None)
        assert line is not None, f"no goal line for {name!r} in {list(lines)}"
        assert line[0] == pytest.approx(value) and line[1] == verdict, (name, line)
    assert len(lines) == len(SECTION_GOALS), list(lines)
    # the overhead section says under what load it was measured
    assert "Load average (1/5/15 min) at the start of this section: 0.50 / 0.40 / 0.30; " in md
    assert "at its end: 1.25 / 0.50 / 0.35." in md

def test_long_transcriptions_held_to_the_raw_call_that_detects_alike(tmp_path: Path) -> None:
    """Each long clip with and without a language is a goal row of its own; without one, the
    goal's raw call detects with the gateway's settings, and faster-whisper's default detection
    is shown beside it (what the surer detection costs), not held to the goal."""
    res = fake_results()
    base = {"audio_s": 48.0, "raw": [6.0], "gateway": [6.1], "raw_median": 6.0,
            "raw_cpu_median": 11.0, "gateway_cpu_median": 11.2}  # fmt: skip
    given = {**base, "case": "transcription, 48 s clip, language=en", "language": "en",
             "gateway_median": 6.12, "ratio": 1.02, "cpu_ratio": 1.018}  # fmt: skip
    detected = {**base, "case": "transcription, 48 s clip, no language", "language": None,
                "gateway_median": 6.6, "ratio": 1.1, "cpu_ratio": 1.09,
                "detection": {"segments": 3, "threshold": 0.97}, "raw_default": [5.0],
                "raw_default_median": 5.0, "raw_default_cpu_median": 9.0,
                "ratio_default": 1.32, "cpu_ratio_default": 1.244}  # fmt: skip
    res["overhead"]["cases"] += [given, detected]
    md = report.render(res)
    assert ("| transcription, 48 s clip, language=en | ≤ 1.05× raw "
            "| 1.02× wall (1.02× CPU) | met |") in md  # fmt: skip
    assert ("| transcription, 48 s clip, no language (raw call detecting as the gateway does) "
            "| ≤ 1.05× raw | 1.10× wall (1.09× CPU) | **not met** |") in md  # fmt: skip
    assert "48–60 s clip | ≤ 1.05× raw | not measured" not in md
    assert "up to 3 30 s segments of speech, one after another until one is sure (p > 0.97)" in md
    assert ("| transcription, 48 s clip, no language | 5.00 s | 6.60 s | 1.32× "
            "| 9.00 s | 1.24× |") in md  # fmt: skip
    assert "| transcription, 48 s clip, language=en | 5.00 s" not in md  # named: no detection


def test_raw_kokoro_baseline_runs_like_the_gateway_cpu_lane() -> None:
    """The raw baseline's session has the gateway CPU lane's options (idle threads sleep), so
    the overhead ratio measures the gateway; `spinning` keeps ONNX Runtime's default."""
    from benchmarks.raw import _load
    from gateway.engines.base import Device
    from gateway.engines.kokoro import KokoroEngine

    from ..conftest import models_dir

    key = "session.intra_op.allow_spinning"
    folder = models_dir() / "kokoro"
    lane = KokoroEngine("kokoro", folder).load(Device("cpu", 0, 2)).sess.get_session_options()
    raw, none = _load(folder, None, 2, "int8", spinning=False)
    options = raw.sess.get_session_options()
    assert none is None  # Kokoro only: no Whisper loaded
    assert options.get_session_config_entry(key) == lane.get_session_config_entry(key) == "0"
    assert options.intra_op_num_threads == lane.intra_op_num_threads == 2
    assert options.inter_op_num_threads == lane.inter_op_num_threads
    spun, _ = _load(folder, None, 2, "int8", spinning=True)
    with pytest.raises(RuntimeError, match="does not have configuration"):
        spun.sess.get_session_options().get_session_config_entry(key)  # ORT's default: spin


def test_quick_never_writes_docs() -> None:
    args = Namespace(name="report", quick=True, out=report.DOCS)
    with pytest.raises(SystemExit):
        report.main(args, None)  # type: ignore[arg-type]


def test_the_report_finds_the_checkouts_docs_from_any_working_folder(tmp_path: Path) -> None:
    """benchmarks/ runs only from a checkout, so docs/ is found from the package's own place,
    not from the working folder; `python -m benchmarks report --quick` refuses to write there."""
    from benchmarks.__main__ import main

    checkout = Path(__file__).resolve().parents[2]
    probe = "import benchmarks; print(benchmarks.DOCS)"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert Path(run.stdout.strip()) == checkout / "docs"
    assert (checkout / "docs" / "benchmarks.md").is_file()
    with pytest.raises(SystemExit, match="never writes to docs"):
        main(["report", "--quick", "--out", str(checkout / "docs")])
