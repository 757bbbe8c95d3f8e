"""The cost of `timestamps: true` (issue 20): the same speech asked for plain and with word
timings, in-process (no socket), alternating, on the CPU lane (which runs the timed model either
way, so the difference is the word map, the word clock and the JSON around the audio).

Section 10 of `python -m benchmarks report`; run alone: `python -m benchmarks.timings [--rounds N]`
(prints the section).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config import Settings

TEXT = (
    "The storm passed quickly. By noon, the streets were dry again, and people came back "
    "outside. It costs $5 to park near the river on weekends, e.g. on Saturday. **Nobody** "
    "expected the sun so soon! Children ran to the park; their parents followed slowly."
)
QUICK_TEXT = "It costs $5 to park near the river on weekends."
FORMS: dict[str, dict[str, Any]] = {
    "plain mp3": {},
    "timestamps JSON (mp3)": {"timestamps": True},
    "plain sse": {"stream_format": "sse"},
    "timestamps sse": {"stream_format": "sse", "timestamps": True},
}


async def _run(rounds: int, text: str = TEXT) -> dict[str, list[float]]:
    settings = Settings()
    settings.server.api_keys, settings.server.api_keys_file = [], None
    app = create_app(settings)
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=600) as c:
            body = {"model": "tts-1", "input": text, "voice": "jf_alpha"}
            await c.post("/v1/audio/speech", json={**body, "timestamps": True})  # warm
            for _ in range(rounds):
                for name, extra in FORMS.items():
                    start = time.perf_counter()
                    r = await c.post("/v1/audio/speech", json={**body, **extra})
                    r.raise_for_status()
                    times[name].append(time.perf_counter() - start)
    return times


GOAL = 1.03  # timestamps: true against plain speech, same form (issue 20)


def run(quick: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    rounds = 1 if quick else 5
    say(f"word timings: {len(FORMS)} forms x{rounds}, alternating, in-process")
    # quick: one sentence with a price (a smoke test of the section, ~4x shorter)
    times = asyncio.run(_run(rounds, QUICK_TEXT if quick else TEXT))
    med = {name: statistics.median(values) for name, values in times.items()}
    return {"rounds": rounds, "chars": len(QUICK_TEXT if quick else TEXT), "times": times, "median": med,
            "ratio_json": med["timestamps JSON (mp3)"] / med["plain mp3"],
            "ratio_sse": med["timestamps sse"] / med["plain sse"]}  # fmt: skip


def render(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    met = {True: "met", False: "**not met**"}
    med = r["median"]
    rows = [f"| {name} | {med[name]:.3f} | {len(r['times'][name])} |" for name in FORMS]
    return [
        "## 10. Word timings (`timestamps: true`)",
        "",
        f"The same English text ({r.get('chars', len(TEXT))} characters: sentences, a price, "
        "and in the full run an abbreviation and Markdown) spoken plain and with word timings, on the CPU lane, in-process, the forms alternating round by "
        "round. Both run the timed model; the difference is the word map, the word clock and the "
        "JSON around the audio.",
        "",
        "| request | median s | runs |",
        "|---|---|---|",
        *rows,
        "",
        f"- timestamps JSON / plain mp3: {r['ratio_json']:.2f}x; timestamps SSE / plain SSE: "
        f"{r['ratio_sse']:.2f}x; goal <= {GOAL:g}x: "
        f"{met[max(r['ratio_json'], r['ratio_sse']) <= GOAL]}",
        "",
    ]


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
