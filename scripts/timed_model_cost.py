"""What the timed Kokoro model costs: timed units on model.timed.onnx against plain units on the
untimed model.onnx, the same text and voice, interleaved so that the load of a shared machine
falls on both alike (the order within each round alternates).

Usage: python scripts/timed_model_cost.py [--rounds 15] [--threads 2] [--dir MODELS_DIR]
Prints, for wall time and for this process's CPU time (less disturbed by other work on a shared
machine), the median of the per-round ratios (timed / untimed) and the ratio of the medians, and
whether both gave the same samples.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from gateway.config import Settings
from gateway.engines.base import Device, Lane
from gateway.engines.kokoro import KokoroEngine, TimedAudio

TEXT = (
    "The little robot walked slowly across the kitchen floor. It picked up a red cup and placed "
    "it carefully on the wooden table. Then it turned toward the window and watched the rain "
    "falling on the green garden outside."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Settings().models.dir)
    args = parser.parse_args()
    folder = args.dir / "kokoro"
    device = Device(Lane.cpu, threads=args.threads)
    plain = KokoroEngine("kokoro", folder)
    timed = KokoroEngine("kokoro", folder, cpu_model=folder / "model.timed.onnx")
    runs = {
        "untimed": (plain, plain.load(device), plain.plan(TEXT, "jf_alpha", 1.0)),
        "timed": (timed, timed.load(device), timed.plan(TEXT, "jf_alpha", 1.0, timed=True)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    audio: dict[str, np.ndarray] = {}
    for name, (engine, handle, units) in runs.items():  # warm-up, and the samples compared
        parts = [engine.run(handle, u) for u in units]
        audio[name] = np.concatenate([p.audio if isinstance(p, TimedAudio) else p for p in parts])
    for i in range(args.rounds):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in order:
            engine, handle, units = runs[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for unit in units:
                engine.run(handle, unit)
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(
        f"audio {len(audio['untimed']) / 24000:.2f} s, {args.rounds} rounds, {args.threads} threads"
    )
    for label, times in (("wall", seconds), ("cpu", cpu)):
        ratios = [t / u for t, u in zip(times["timed"], times["untimed"], strict=True)]
        med = {name: statistics.median(s) for name, s in times.items()}
        q = statistics.quantiles(ratios, n=4)
        print(
            f"{label}: median untimed {med['untimed']:.3f} s, timed {med['timed']:.3f} s, "
            f"ratio of medians {med['timed'] / med['untimed']:.3f}; per-round ratio median "
            f"{statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})"
        )
    print(f"same samples: {np.array_equal(audio['untimed'], audio['timed'])}")


if __name__ == "__main__":
    main()
