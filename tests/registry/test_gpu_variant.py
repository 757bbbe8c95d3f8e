"""The GPU lane's Kokoro variant: a float model derived exactly from the embedded int8 one.

Proven here on the CPU (CI has no GPU): the rewrite is exact on a small quantized model built in
the test, the real derived model has no integer op left, matches its pin byte for byte, and its
speech transcribes back. A missing or corrupt variant sends the GPU lane's work to the CPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from gateway.audio.decode import decode_audio
from gateway.config import Settings
from gateway.engines.kokoro import GpuOptions, KokoroEngine
from gateway.registry.dequantize import INTEGER_OPS, dequantize_file, integer_ops
from gateway.registry.manifest import load_manifest
from gateway.registry.store import RECORD, ModelStore
from gateway.scheduler import render_status

from ..conftest import encode, missing_tool, wer
from ..support.variants import made_variant

# derives and runs the 325 MB float variant
pytestmark = pytest.mark.slow

MODELS_DIR = Settings().models.dir  # honours GATEWAY_MODELS__DIR

MANIFEST = load_manifest()
VARIANT = next(v for v in MANIFEST["kokoro"].variants if v.lane == "gpu")
TIMED = next(v for v in MANIFEST["kokoro"].variants if v.lane == "cpu")  # the GPU file's source
TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the "
        "forest to find some food before the winter comes.")  # fmt: skip


def _tiny_float_model(path: Path) -> None:
    """MatMul -> Conv (with bias) -> bidirectional LSTM: each pattern the rewriter knows."""
    rng = np.random.default_rng(0)
    hidden = 8
    inits = [
        nh.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1"),
        nh.from_array(rng.normal(size=(24, 32, 3)).astype(np.float32), "wc"),
        nh.from_array(rng.normal(size=(24,)).astype(np.float32), "bc"),
        nh.from_array((rng.normal(size=(2, 4 * hidden, 24)) * 0.3).astype(np.float32), "wl"),
        nh.from_array((rng.normal(size=(2, 4 * hidden, hidden)) * 0.3).astype(np.float32), "rl"),
        nh.from_array((rng.normal(size=(2, 8 * hidden)) * 0.1).astype(np.float32), "bl"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m"]),
        helper.make_node("Transpose", ["m"], ["mt"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["mt", "wc", "bc"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Transpose", ["c"], ["ct"], perm=[2, 0, 1]),
        helper.make_node("LSTM", ["ct", "wl", "rl", "bl"], ["y"], hidden_size=hidden,
                         direction="bidirectional"),  # fmt: skip
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


# uint8 weights are asymmetric (non-zero zero points, as in the Kokoro model's convolutions);
# int8 per channel has per-row scales (as its MatMuls do)
@pytest.mark.parametrize("per_channel", [False, True], ids=["uint8-per-tensor", "int8-per-channel"])
def test_dequantize_is_exact_on_a_quantized_model(tmp_path: Path, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8, back = tmp_path / "f.onnx", tmp_path / "q.onnx", tmp_path / "d.onnx"
    _tiny_float_model(fp32)
    weights = QuantType.QInt8 if per_channel else QuantType.QUInt8
    quantize_dynamic(str(fp32), str(int8), weight_type=weights, per_channel=per_channel)
    q = onnx.load(str(int8))
    assert {"MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM"} <= {n.op_type for n in q.graph.node}

    dequantize_file(int8, back)
    d = onnx.load(str(back))
    ops = {n.op_type for n in d.graph.node}
    assert not ops & INTEGER_OPS and {"MatMul", "Conv", "LSTM"} <= ops
    # Every float weight is (q - zero_point) x scale of the int8 one, bit for bit.
    qi = {t.name: nh.to_array(t) for t in q.graph.initializer}
    di = {t.name: nh.to_array(t) for t in d.graph.initializer}
    lstm = next(n for n in q.graph.node if n.op_type == "DynamicQuantizeLSTM")
    w_q, r_q = qi[lstm.input[1]], qi[lstm.input[2]]
    w_scale, w_zp = qi[lstm.input[8]], qi[lstm.input[9]]
    # per direction: scales [2]; per channel: [2, 4*hidden] along W_q's last axis
    spread = (slice(None), None, slice(None)) if per_channel else (slice(None), None, None)
    assert w_scale.ndim == (2 if per_channel else 1)
    expect_w = ((w_q.astype(np.float64) - w_zp.astype(np.float64)[spread])
                * w_scale.astype(np.float64)[spread]).astype(np.float32)  # fmt: skip
    new_lstm = next(n for n in d.graph.node if n.op_type == "LSTM")
    np.testing.assert_array_equal(di[new_lstm.input[1]], expect_w.transpose(0, 2, 1))
    assert di[new_lstm.input[2]].shape == (r_q.shape[0], r_q.shape[2], r_q.shape[1])
    # The float model computes what the original did, within the int8 weights' rounding (the
    # LSTM amplifies it), and no further from it than the int8 model with its quantized inputs.
    x = np.random.default_rng(1).normal(size=(1, 8, 16)).astype(np.float32)
    ref, got, qout = _run(fp32, x), _run(back, x), _run(int8, x)
    err, qerr = np.abs(got - ref), np.abs(qout - ref)
    assert err.mean() < 0.1 * np.abs(ref).mean(), (err.mean(), np.abs(ref).mean())
    assert err.mean() <= qerr.mean()


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_variant(tmp_path_factory, VARIANT, dequantize_file)


def test_real_variant_is_float_deterministic_and_pinned(derived: Path) -> None:
    assert integer_ops(MODELS_DIR / "kokoro" / "model.onnx")  # the int8 model has them
    assert integer_ops(derived) == []
    digest = hashlib.sha256(derived.read_bytes()).hexdigest()
    assert digest == VARIANT.sha256 and derived.stat().st_size == VARIANT.size


def test_real_variant_speaks_words_that_transcribe_back(derived: Path, whisper_base) -> None:
    folder = MODELS_DIR / "kokoro"
    session = ort.InferenceSession(str(derived), providers=["CPUExecutionProvider"])
    from kokoro_onnx import Kokoro

    engine = KokoroEngine("kokoro", folder)
    handle = Kokoro.from_session(session, str(engine.voices_path))
    audio = np.concatenate([engine.run(handle, u) for u in engine.plan(TEXT, "jf_alpha", 1.0)])
    text = whisper_base(audio, 24000)
    assert wer(TEXT, text) <= 0.1, text


@pytest.fixture(scope="module")
def whisper_base():  # type: ignore[no-untyped-def]
    from faster_whisper import WhisperModel

    model = WhisperModel(str(MODELS_DIR / "whisper-base"), device="cpu", compute_type="int8")

    def transcribe(audio: np.ndarray, rate: int) -> str:
        pcm = decode_audio(encode(audio, rate, "wav", "pcm_s16le", "s16"))
        segments, _ = model.transcribe(pcm, language="en", beam_size=5)
        return " ".join(s.text for s in segments)

    return transcribe


def _store_copy(tmp_path: Path) -> ModelStore:
    src = MODELS_DIR / "kokoro"
    if not (src / VARIANT.name).is_file():
        missing_tool("the Kokoro GPU variant is not made (gateway models pull kokoro)")
    dest = tmp_path / "kokoro"
    dest.mkdir()
    for name in ("model.onnx", "voices.npz", RECORD, TIMED.name, VARIANT.name):
        (dest / name).symlink_to(src / name) if name.endswith("onnx") else shutil.copy(
            src / name, dest / name
        )
    return ModelStore(tmp_path, MANIFEST)


def test_missing_or_corrupt_variant_is_named_and_the_gpu_lane_refuses(tmp_path: Path) -> None:
    store = _store_copy(tmp_path)
    path, problem = store.variant_path("kokoro", "gpu")
    assert path is not None and problem is None
    assert store.verify_variants("kokoro") == {"cpu": None, "gpu": None}
    # corrupt: same size, one byte changed -> the hash check names it
    broken = tmp_path / "kokoro" / VARIANT.name
    broken.unlink()
    data = bytearray((MODELS_DIR / "kokoro" / VARIANT.name).read_bytes()[:4096])
    data[100] ^= 0xFF
    with open(broken, "wb") as fh:
        fh.write(data)
        fh.truncate(VARIANT.size)
    assert "does not match" in (store.verify_variants("kokoro")["gpu"] or "")
    # missing -> the engine says the GPU lane cannot run it, and why
    broken.unlink()
    path, problem = store.variant_path("kokoro", "gpu")
    assert path is None and problem and "gateway models pull kokoro" in problem
    engine = KokoroEngine("kokoro", tmp_path / "kokoro", gpu=GpuOptions(None, problem))
    assert engine.variants() == {"cpu": "model.onnx", "gpu": None}
    if "CUDAExecutionProvider" in ort.get_available_providers():
        ok, why = engine.gpu_support()
        assert not ok and problem in why


def test_pull_derives_the_variant_offline_and_records_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, MANIFEST)
    store.pull("kokoro")
    record = json.loads((tmp_path / "kokoro" / RECORD).read_text())
    meta = record["variants"][VARIANT.name]
    assert meta == {"lane": "gpu", "sha256": VARIANT.sha256, "size": VARIANT.size,
                    "upstream": False}  # fmt: skip
    assert store.verify("kokoro") == []
    assert store.verify_variants("kokoro") == {"cpu": None, "gpu": None}


def linked_models(tmp_path: Path, broken: str | None = None, missing: bool = False) -> Settings:
    """Settings for a models folder that links the real files, except the Kokoro file `broken`:
    replaced by same-size zeros, or absent with `missing`."""
    src = MODELS_DIR / "kokoro"
    if not (src / VARIANT.name).is_file() or not (src / TIMED.name).is_file():
        missing_tool("the Kokoro lane variants are not made (gateway models pull kokoro)")
    dest = tmp_path / "kokoro"
    dest.mkdir(parents=True)
    for model in ("whisper-base", "whisper-tiny.en"):
        (tmp_path / model).symlink_to(MODELS_DIR / model)
    shutil.copy(src / RECORD, dest / RECORD)
    for name in ("model.onnx", "voices.npz", TIMED.name, VARIANT.name):
        if name != broken:
            (dest / name).symlink_to(src / name)
        elif not missing:
            with open(dest / name, "wb") as fh:
                fh.truncate((src / name).stat().st_size)  # the right size, the wrong bytes
    settings = Settings()
    settings.models.dir = tmp_path
    return settings


def _gateway_with_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: bool,
                          missing: bool = False):  # type: ignore[no-untyped-def]  # fmt: skip
    """A Runtime on a SIMULATED GPU whose models folder links the real files, with the Kokoro
    GPU variant intact, replaced by same-size zeros (corrupt) or absent (missing)."""
    from gateway.runtime import Runtime
    from gateway.scheduler import SimulatedGpu

    broken = VARIANT.name if corrupt or missing else None
    settings = linked_models(tmp_path, broken, missing)
    monkeypatch.setattr(KokoroEngine, "gpu_support", lambda self: (True, "simulated CUDA"))
    return Runtime(settings, gpu=SimulatedGpu(total_mib=16384))


def _verified(gw) -> None:  # type: ignore[no-untyped-def]
    """Run the start-up verification on an event loop, as `Runtime.start` does, to its end."""

    async def main() -> None:
        gw.verify_in_background()
        await asyncio.wait_for(gw.verification, 300)

    asyncio.run(main())


@pytest.mark.parametrize("case", ["intact", "missing", "corrupt"])
def test_simulated_gpu_a_bad_variant_sends_kokoro_to_the_cpu_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    gw = _gateway_with_variant(tmp_path, monkeypatch, case == "corrupt", case == "missing")
    _verified(gw)
    placer = gw.scheduler.internals_for_tests().placer
    lane = placer.candidates("kokoro")[0]
    status = render_status(gw.scheduler.snapshot())["models"]["kokoro"]
    if case == "intact":
        assert (lane.lane, lane.reason) == ("gpu", None)
        assert status["gpu_variant_ok"] and status["variants"]["gpu"] == VARIANT.name
    else:
        assert (lane.lane, lane.reason) == ("cpu", "gpu_variant")
        assert not status["gpu_variant_ok"]
        why = status["gpu_runtime"]["detail"] if case == "corrupt" else ""
        assert case == "missing" or "does not match" in why, status
    assert gw.models["kokoro"].engine is not None  # the CPU lane is unaffected either way


def test_simulated_gpu_a_variant_still_being_verified_is_not_used_until_it_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash of the GPU variant is held back (an event, not a duration): while it runs,
    Kokoro's units go to the CPU lane; once it passes, on the event loop, to the GPU lane."""
    gw = _gateway_with_variant(tmp_path, monkeypatch, corrupt=False)
    release, hashing = threading.Event(), threading.Event()
    real = gw.store.verify_variants

    def held(model_id: str, precision: str | None = None) -> dict[str, str | None]:
        if model_id == "kokoro":
            hashing.set()
            release.wait(300)
        return real(model_id, precision)

    monkeypatch.setattr(gw.store, "verify_variants", held)
    placer = gw.scheduler.internals_for_tests().placer
    passed_on: list[threading.Thread] = []
    real_pass = placer.pass_gpu_variant

    def record_pass(model: str) -> None:
        passed_on.append(threading.current_thread())
        real_pass(model)

    monkeypatch.setattr(placer, "pass_gpu_variant", record_pass)

    async def main() -> list[tuple[str, str | None, bool]]:
        seen = []
        gw.verify_in_background()
        while not hashing.is_set():
            await asyncio.sleep(0.01)
        for _ in range(3):  # loop turns while the hash runs: still the CPU
            lane = placer.candidates("kokoro")[0]
            ok = gw.scheduler.snapshot().models["kokoro"].gpu_variant_ok
            seen.append((str(lane.lane), lane.reason, ok))
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait_for(gw.verification, 300)
        lane = placer.candidates("kokoro")[0]
        ok = gw.scheduler.snapshot().models["kokoro"].gpu_variant_ok
        return [*seen, (str(lane.lane), lane.reason, ok)]

    seen = asyncio.run(main())
    assert seen[:3] == [("cpu", "gpu_variant", False)] * 3, seen
    assert seen[3] == ("gpu", None, True), seen
    assert passed_on and set(passed_on) == {threading.main_thread()}  # the loop's, not the hash's
