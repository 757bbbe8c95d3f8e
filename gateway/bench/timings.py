"""The cost of `timestamps: true` (issue 20): the same speech asked for plain and with word
timings, in-process (no socket), alternating, on the CPU lane (which runs the timed model either
way, so the difference is the word map, the word clock and the JSON around the audio).

Run alone: `python -m gateway.bench.timings [--rounds N]` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from ..app import create_app
from ..config import Settings

TEXT = (
    "The storm passed quickly. By noon, the streets were dry again, and people came back "
    "outside. It costs $5 to park near the river on weekends, e.g. on Saturday. **Nobody** "
    "expected the sun so soon! Children ran to the park; their parents followed slowly."
)
FORMS: dict[str, dict[str, Any]] = {
    "plain mp3": {},
    "timestamps JSON (mp3)": {"timestamps": True},
    "plain sse": {"stream_format": "sse"},
    "timestamps sse": {"stream_format": "sse", "timestamps": True},
}


async def _run(rounds: int) -> dict[str, list[float]]:
    settings = Settings()
    settings.server.api_keys, settings.server.api_keys_file = "", None
    app = create_app(settings)
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=600) as c:
            body = {"model": "tts-1", "input": TEXT, "voice": "jf_alpha"}
            await c.post("/v1/audio/speech", json={**body, "timestamps": True})  # warm
            for _ in range(rounds):
                for name, extra in FORMS.items():
                    start = time.perf_counter()
                    r = await c.post("/v1/audio/speech", json={**body, **extra})
                    r.raise_for_status()
                    times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = asyncio.run(_run(args.rounds))
    print("| request | median s | vs plain |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        base = times["plain sse" if "sse" in name else "plain mp3"]
        ratio = statistics.median(values) / statistics.median(base)
        print(f"| {name} | {statistics.median(values):.3f} | {ratio:.3f}x |")


if __name__ == "__main__":
    main()
