"""The benchmark report's overhead section (§1) alone, full inputs, 3 runs of each case: the
gateway over HTTP against the raw library call, interleaved. About 3 minutes on 2 quiet cores.

    .venv/bin/python -m benchmarks.overhead       # prints one line per case; /tmp/overhead.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from benchmarks import measure
from benchmarks.client import speech, transcribe
from benchmarks.server import GatewayProcess
from gateway.config import Settings


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    settings = Settings()
    with GatewayProcess({}, "overhead", Path("/tmp/overhead-logs"), quiet=True) as gw:
        base = gw.base_url
        inputs = measure.prepare(base, False, say)
        with httpx.Client(timeout=600) as client:
            speech(client, base, inputs["sentences"][0][0])
            transcribe(client, base, Path(inputs["tp_clip"]).read_bytes(), "warm.mp3")
        res = measure.overhead(base, gw.pid, settings, inputs, 3, say)
    Path("/tmp/overhead.json").write_text(json.dumps(res, indent=1, default=str))
    for c in res["cases"]:
        print(
            f"{c['case']:45s} raw {c['raw_median']:.2f} s  gw {c['gateway_median']:.2f} s  wall {c['ratio']:.3f}x  cpu {c['cpu_ratio']:.3f}x",
            f" | default-detection raw {c['raw_default_median']:.2f} s {c['ratio_default']:.3f}x"
            if "raw_default_median" in c
            else "",
        )
    print("load", res.get("load_before"), res.get("load_after"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
