"""How a transcription's windows reach the scheduler, on a SIMULATED GPU with a fake Whisper that
records its calls: where the model batches, a whole response's first windows share one batched
decode (its language detected once), later batches reuse that language; streaming still sends
the first window alone (its text goes out first); without batching, one window at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway.config import SchedulerSettings
from gateway.engines.base import Device
from gateway.engines.whisper import TranscribeResult, TranscribeUnit
from gateway.scheduler import Level, ModelPolicy, Scheduler, SchedulerMetrics, SimulatedGpu
from gateway.tasks.transcription import Transcription, TranscriptionJob, TranscriptionPlan


class RecordingWhisper:
    """Detects "de" where the language is not given; each window's text is its offset."""

    family = "fake-whisper"
    gpu_capped = False
    model_id = "w"

    def __init__(self) -> None:
        self.calls: list[list[tuple[float, str | None]]] = []

    def gpu_support(self) -> tuple[bool, str]:
        return True, "simulated CUDA"

    def load(self, device: Device) -> Device:
        return device

    def unload(self, handle: Device) -> None:
        pass

    def batch_key(self, payload: TranscribeUnit) -> Hashable | None:
        return payload.language or payload.job  # as WhisperEngine: unknown language, own job only

    def run_batch(self, handle: Device, payloads: list[TranscribeUnit], batch_size: int) -> list[Any]:
        self.calls.append([(p.offset_s, p.language) for p in payloads])
        lang = payloads[0].language or "de"
        return [TranscribeResult([{"text": f"w{p.offset_s:g}"}], lang) for p in payloads]

    def run(self, handle: Device, payload: TranscribeUnit) -> Any:
        return self.run_batch(handle, [payload], 1)[0]

    def audio_seconds(self, payload: TranscribeUnit, result: Any) -> float:
        return 1.0


def _work(n: int) -> Transcription:
    plan = TranscriptionPlan("w", "transcribe", None, None, 0.0, False, False)
    units = [TranscribeUnit(np.zeros(16000, np.float32), float(i * 30), job=7) for i in range(n)]
    return Transcription(plan, units, n * 30.0, Level.batch)


def _run(n: int, max_batch: int, gpu: bool, streaming: bool) -> tuple[list[Any], list[str]]:
    eng = RecordingWhisper()
    sim = SimulatedGpu(total_mib=16000) if gpu else None
    pol = {"w": ModelPolicy(cpu_threads=2, max_batch=max_batch, batch_latency_s=10)}
    s = Scheduler({"w": eng}, pol, SchedulerSettings(cores=2, gpu_slots=1), sim,  # type: ignore[dict-item, arg-type]
                  SchedulerMetrics(CollectorRegistry()))  # fmt: skip

    async def main() -> list[str]:
        async with s.job("w", Level.batch) as job:
            tj = TranscriptionJob(job, _work(n))
            if streaming:
                texts = [piece async for piece in tj.deltas(await tj.first())]
            else:
                texts = [seg["text"] for seg in (await tj.transcript()).segments]
        await s.close(1)
        return texts

    return eng.calls, asyncio.run(main())


def test_simulated_gpu_whole_response_batches_its_first_windows_together() -> None:
    calls, texts = _run(6, 4, gpu=True, streaming=False)
    assert calls == [
        [(0.0, None), (30.0, None), (60.0, None), (90.0, None)],  # one batch, one detection
        [(120.0, "de"), (150.0, "de")],  # the detected language, so all windows agree
    ]
    assert texts == [f"w{i * 30}" for i in range(6)]


def test_simulated_gpu_two_windows_are_one_batch() -> None:
    calls, _ = _run(2, 16, gpu=True, streaming=False)
    assert calls == [[(0.0, None), (30.0, None)]]


@pytest.mark.parametrize("n", [1, 3])
def test_simulated_gpu_streaming_sends_the_first_window_alone(n: int) -> None:
    calls, texts = _run(n, 4, gpu=True, streaming=True)
    assert calls[0] == [(0.0, None)]
    assert calls[1:] == ([[(30.0, "de"), (60.0, "de")]] if n == 3 else [])
    assert [t.strip() for t in texts] == [f"w{i * 30}" for i in range(n)]


def test_without_a_gpu_windows_run_one_after_another() -> None:
    calls, texts = _run(3, 4, gpu=False, streaming=False)
    assert calls == [[(0.0, None)], [(30.0, "de")], [(60.0, "de")]]
    assert texts == ["w0", "w30", "w60"]
