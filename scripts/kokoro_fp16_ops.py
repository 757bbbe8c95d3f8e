"""Which of the heavy op types lose accuracy in fp16 (gateway/registry/fp16.py): all of them in
fp16, then each one kept in fp32 alone, the audio scored by its SNR against the float model and
by whether the predicted durations stay the same. ONNX Runtime's CPU provider runs the fp16
ops here (it has fp16 kernels for MatMul, Conv, ConvTranspose and LSTM).

    .venv/bin/python scripts/kokoro_fp16_ops.py [--out results.json]

Slow on a loaded machine (each case speaks the sentences on the CPU); the results feed
`KEEP_FP32` in gateway/registry/fp16.py and docs/gpu-sizing.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from gateway.config import Settings
from gateway.engines.kokoro import KokoroEngine
from gateway.registry.dequantize import write_model
from gateway.registry.fp16 import FP16_OPS, to_fp16

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
]
# case -> the op types run in fp16
CASES = {"all in fp16": FP16_OPS, **{f"{op} in fp32": tuple(o for o in FP16_OPS if o != op)
                                    for op in FP16_OPS}}  # fmt: skip


def feeds(engine: KokoroEngine) -> list[dict[str, np.ndarray]]:
    out = []
    for text in SENTENCES:
        unit = engine.plan(text, "jf_alpha", 1.0)[0]
        tokens = engine.tokenizer().tokenize(unit.phonemes)
        style = np.asarray(engine.voices["jf_alpha"][len(tokens)], dtype=np.float32)
        out.append(
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style,
                "speed": np.ones(1, dtype=np.float32),
            }
        )
    return out


def speak(path: Path, inputs: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [session.run(None, feed) for feed in inputs]


def snr_db(ref: np.ndarray, got: np.ndarray) -> float | None:
    if ref.shape != got.shape:
        return None
    noise = float(((ref - got) ** 2).sum())
    return round(10 * np.log10(float((ref**2).sum()) / noise), 2) if noise else float("inf")


def spectral_snr_db(
    ref: np.ndarray, got: np.ndarray, n: int = 1024, hop: int = 256
) -> float | None:
    """SNR of the magnitude spectrogram (what is heard, without the phase drift)."""
    if ref.shape != got.shape:
        return None
    window = np.hanning(n).astype(np.float32)

    def mag(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * window
        return np.abs(np.fft.rfft(frames, axis=-1))

    a, b = mag(ref), mag(got)
    return round(float(10 * np.log10((a**2).sum() / ((a - b) ** 2).sum())), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("kokoro_fp16_ops.json"))
    args = parser.parse_args()
    folder = Settings().models.dir / "kokoro"
    float_path = folder / "model.gpu.onnx"
    engine = KokoroEngine("kokoro", folder)
    inputs = feeds(engine)
    ref = speak(float_path, inputs)
    model = onnx.load(str(float_path))
    results = {}
    present = {n.op_type for n in model.graph.node}
    for name, ops in CASES.items():
        if name != "all in fp16" and name.split()[0] not in present:
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            write_model(to_fp16(model, ops), path)
            got = speak(path, inputs)
        results[name] = {
            "snr_db": [snr_db(r[0], g[0]) for r, g in zip(ref, got, strict=True)],
            "spectral_snr_db": [spectral_snr_db(r[0], g[0]) for r, g in zip(ref, got, strict=True)],
            "same_durations": [
                bool(np.array_equal(r[1], g[1])) for r, g in zip(ref, got, strict=True)
            ],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, results[name], flush=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
