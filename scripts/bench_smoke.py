#!/usr/bin/env python3
"""`make bench-smoke`: one `python -m benchmarks report --quick` into a temporary folder, then a check
that the report machinery produced every section, table, plot and raw figure.

    .venv/bin/python scripts/bench_smoke.py [--keep DIR]

Timings are never judged (quick mode is tiny inputs and few runs): only that each benchmark ran
end to end against real gateway processes and its results reached the page. Run it after
changing anything under benchmarks/ or the code a benchmark drives (front doors, scheduler,
engines); the test suite covers only the bench's pure functions. Exit status 0 when every check
passes, 1 with the failed checks listed otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("sharing", "overhead", "throughput", "memory", "streaming")
SECTIONS = ("## Goals", "## 1. Overhead", "## 2. Sharing", "## 3. Throughput", "## 4. Memory",
            "## 5. Streaming", "## 6. Accuracy", "## 7. Wyoming", "## 8. Spoken-language",
            "## 9. Realtime", "## 10. Word timings")  # fmt: skip


def check(out: Path) -> list[str]:
    """Every failed check, as a sentence; empty when the report is whole."""
    failed: list[str] = []

    def expect(ok: object, what: str) -> None:
        if not ok:
            failed.append(what)

    md = (out / "benchmarks.md").read_text()
    expect("quick mode" in md, "the page says it is a quick run")
    for heading in SECTIONS:
        expect(heading in md, f"section {heading!r} on the page")
    for name in PLOTS:
        png = out / "img" / f"{name}.png"
        expect(png.exists() and png.read_bytes().startswith(PNG), f"plot {png} is a PNG")
    beside = json.loads((out / "benchmarks.json").read_text())  # the raw JSON beside the page
    expect(beside["accuracy"]["cases"] and beside["overhead"]["cases"], "raw JSON beside the page")
    raw: dict[str, Any] = json.loads(next(out.glob("bench-report-*.json")).read_text())
    configs = raw["sharing"]["configs"]
    expect(set(configs) == {"priority", "fifo", "two-servers"}, "all three sharing layouts ran")
    for name, cfg in configs.items():
        expect(cfg["idle"]["n"] >= 1 and cfg["load"]["n"] >= 1, f"sharing {name}: probes timed")
    expect(all(c["ratio"] > 0 and c["cpu_ratio"] > 0 for c in raw["overhead"]["cases"]),
           "every overhead case has a wall and CPU ratio")  # fmt: skip
    expect(raw["memory_after"]["VmHWM"] > 0, "the gateway's peak memory was read")
    rt = raw["realtime"]  # every turn over the WebSocket came back with its transcript
    expect(rt["realtime"]["n"] == rt["http"]["n"] == rt["loaded"]["n"] >= 2, "realtime turns timed")
    expect(all("volume" in t.lower() for t in rt["transcripts"]),
           f"realtime transcripts heard the turn: {rt['transcripts']}")  # fmt: skip
    tm = raw["timings"]  # every form ran and was timed
    expect(all(len(v) == 1 for v in tm["times"].values()) and tm["ratio_json"] > 0,
           "every word-timings form timed once")  # fmt: skip
    mp3 = raw["overhead"]["mp3_encoding"]  # both encoders timed on the same audio
    expect(mp3["audio_s"] > 1 and len(mp3["lame"]) == len(mp3["pyav"]) >= 3, "mp3 encoders timed")
    expect("LAME through `lameenc`" in md, "the mp3 encoder comparison on the page")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="write the report here and keep it")
    args = parser.parse_args()
    docs_md = REPO / "docs" / "benchmarks.md"
    before = docs_md.stat().st_mtime if docs_md.exists() else None
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        out = args.keep or Path(tmp) / "report"
        started = time.monotonic()
        cmd = [sys.executable, "-m", "benchmarks", "report", "--quick", "--out", str(out)]
        # from a folder of its own, so a path written relative to the working directory shows;
        # the checkout on PYTHONPATH is how benchmarks/ is found (it is not installed)
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        r = subprocess.run(cmd, cwd=tmp, env=env)
        took = time.monotonic() - started
        if r.returncode != 0:
            print(f"bench-smoke: `{' '.join(cmd[1:])}` exited with {r.returncode}", file=sys.stderr)
            return 1
        failed = check(out)
    after = docs_md.stat().st_mtime if docs_md.exists() else None
    if after != before:
        failed.append("docs/benchmarks.md untouched by a quick run")
    for what in failed:
        print(f"bench-smoke FAILED: {what}", file=sys.stderr)
    print(f"bench-smoke: {'FAILED' if failed else 'ok'} in {took / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
