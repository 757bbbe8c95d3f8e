"""The timed Kokoro model: the embedded int8 model with its predicted phoneme durations exposed as
a second output `duration` (registry/timed.py), and the engine's phoneme edges built on it.

Real models throughout: the derived file adds no node and no integer op, speaks the same samples
as the untimed model for the same tokens, its durations add up to the audio exactly (600 samples
a frame), it is derived deterministically to its pin, and `gateway models pull` makes it (and the
GPU variant from it) offline, also over a cache made under the older pins.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.engines.families import family
from gateway.engines.kokoro import (
    KokoroEngine,
    NoTimings,
    SpeechUnit,
    TimedAudio,
    char_edges,
    cpu_session_options,
)
from gateway.registry.dequantize import dequantize_file, integer_ops
from gateway.registry.manifest import load_manifest
from gateway.registry.store import RECORD, ModelStore
from gateway.registry.timed import add_duration_output, timed_file
from gateway.tasks import speech

from ..conftest import missing_tool, run_asgi

MODELS_DIR = Settings().models.dir  # honours GATEWAY_MODELS__DIR
KOKORO = MODELS_DIR / "kokoro"
MANIFEST = load_manifest()
TIMED = next(v for v in MANIFEST["kokoro"].variants if v.lane == "cpu")
GPU = next(v for v in MANIFEST["kokoro"].variants if v.lane == "gpu")
SAMPLES_PER_FRAME = 600  # Kokoro: 24 kHz audio, 40 duration frames a second
TEXTS = [
    "Hello there.",
    "The meeting starts at nine sharp, so please bring the blue folder and two pens!",
    "Kokoro predicts how long every phoneme lasts before it renders a single sample of audio.",
]


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The timed model derived here and now from the pulled int8 file (about 1 s)."""
    src = KOKORO / "model.onnx"
    if not src.is_file():
        missing_tool("kokoro is not pulled (gateway models pull kokoro)")
    out = tmp_path_factory.mktemp("timed") / TIMED.name
    timed_file(src, out)
    return out


def _timed_path() -> Path:
    path = KOKORO / TIMED.name
    if not path.is_file():
        missing_tool(f"{TIMED.name} is not made (gateway models pull kokoro)")
    return path


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


@pytest.mark.slow
def test_timed_model_adds_no_node_and_no_integer_op(derived: Path) -> None:
    timed, src = derived, KOKORO / "model.onnx"
    assert _ops(timed) == _ops(src)  # not one node more, fewer or of another type
    assert integer_ops(timed) == integer_ops(src)
    outputs = [o.name for o in onnx.load(str(timed), load_external_data=False).graph.output]
    assert outputs == ["audio", "duration"]


@pytest.mark.slow
def test_gpu_variant_is_float_reports_durations_and_speaks_as_before(tmp_path: Path) -> None:
    """The GPU file, derived from the timed one, against the float model derived from the
    untimed int8 file (the GPU variant before timings): the same samples on the CPU."""
    gpu = KOKORO / GPU.name
    if not gpu.is_file():
        missing_tool(f"{GPU.name} is not made (gateway models pull kokoro)")
    model = onnx.load(str(gpu), load_external_data=False)
    assert [o.name for o in model.graph.output] == ["audio", "duration"]
    assert integer_ops(gpu) == []
    del model
    before = tmp_path / "untimed.gpu.onnx"
    dequantize_file(KOKORO / "model.onnx", before)
    engine = KokoroEngine("kokoro", KOKORO)
    tokens = engine.tokenizer().tokenize(engine.tokenizer().phonemize(TEXTS[0], "en-us"))
    feed = {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": engine.voices["jf_alpha"][len(tokens) - 1],
        "speed": np.array([1.0], dtype=np.float32),
    }
    cpu = {"sess_options": cpu_session_options(2), "providers": ["CPUExecutionProvider"]}
    (expected,) = ort.InferenceSession(str(before), **cpu).run(None, feed)
    audio, duration = ort.InferenceSession(str(gpu), **cpu).run(None, feed)
    np.testing.assert_array_equal(audio, expected)
    assert int(duration.sum()) * SAMPLES_PER_FRAME == audio.size


@pytest.fixture(scope="module")
def sessions(derived: Path) -> tuple[ort.InferenceSession, ort.InferenceSession, KokoroEngine]:
    timed = derived
    engine = KokoroEngine("kokoro", KOKORO)

    def session(path: Path) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(path), cpu_session_options(2), providers=["CPUExecutionProvider"]
        )

    return session(KOKORO / "model.onnx"), session(timed), engine


@pytest.mark.parametrize("speed", [1.0, 0.5, 2.0])
@pytest.mark.slow
def test_same_samples_as_the_untimed_model_and_durations_sum_to_the_audio(
    sessions: tuple[ort.InferenceSession, ort.InferenceSession, KokoroEngine], speed: float
) -> None:
    plain, timed, engine = sessions
    tokenizer = engine.tokenizer()
    for text in TEXTS:
        tokens = tokenizer.tokenize(tokenizer.phonemize(text, "en-us"))
        feed = {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": engine.voices["jf_alpha"][len(tokens) - 1],
            "speed": np.array([speed], dtype=np.float32),
        }
        (expected,) = plain.run(None, feed)
        audio, duration = timed.run(None, feed)
        np.testing.assert_array_equal(audio, expected)  # sample for sample
        assert duration.dtype == np.int64 and duration.size == len(tokens) + 2  # and the pads
        assert duration.min() >= 1
        assert int(duration.sum()) * SAMPLES_PER_FRAME == audio.size, (duration.sum(), audio.size)


@pytest.mark.slow
def test_derivation_is_deterministic_and_matches_its_pin(derived: Path, tmp_path: Path) -> None:
    first, second = derived, tmp_path / "b.onnx"
    digests = {
        hashlib.sha256(first.read_bytes()).hexdigest(),
        timed_file(KOKORO / "model.onnx", second),
    }
    assert digests == {TIMED.sha256}
    assert hashlib.sha256(_timed_path().read_bytes()).hexdigest() == TIMED.sha256  # the pulled one
    assert first.stat().st_size == TIMED.size
    # a model that already reports durations (a user's own export) is left as it is
    model = onnx.load(str(first))
    assert add_duration_output(model).SerializeToString() == model.SerializeToString()


@pytest.mark.slow
def test_pull_remakes_variants_made_under_an_older_pin(tmp_path: Path) -> None:
    """A cache pulled before the timed model existed: the GPU file's recorded hash is the old
    pin. A plain `pull` (no --force) makes the timed file and the GPU file again, offline."""
    _timed_path()
    dest = tmp_path / "kokoro"
    dest.mkdir()
    for name in ("model.onnx", "voices.npz"):
        shutil.copy(KOKORO / name, dest / name)
    store = ModelStore(tmp_path, MANIFEST)
    files = {n: {"sha256": MANIFEST["kokoro"].pins[n].sha256,
                 "size": (dest / n).stat().st_size} for n in ("model.onnx", "voices.npz")}  # fmt: skip
    old = "ded34bcbe00cd8c3a982bddddc3ea8bc228f956959c098423ab224f7e7998391"
    (dest / GPU.name).write_bytes(b"an older derivation")
    variants = {GPU.name: {"lane": "gpu", "sha256": old, "size": 19, "upstream": False}}
    record = {"id": "kokoro", "source": "test", "files": files, "variants": variants}
    (dest / RECORD).write_text(json.dumps(record))
    assert store.variant_path("kokoro", "gpu")[0] is not None  # by size, it looked made

    store.pull("kokoro")
    assert store.variant_problems["kokoro"] == []
    made = json.loads((dest / RECORD).read_text())["variants"]
    assert made[TIMED.name]["sha256"] == TIMED.sha256 and made[GPU.name]["sha256"] == GPU.sha256
    assert store.verify_variants("kokoro") == {"cpu": None, "gpu": None}


def test_char_edges_give_dropped_characters_zero_width() -> None:
    vocab = {"a": 1, "b": 2, " ": 3}
    # tokens a, b, " ", a: starts 10, 20, 30, 40; the last ends at 50; the end pad ends at 60
    token = np.array([10, 20, 30, 40, 50, 60])
    edges = char_edges("ab#_ a", token, vocab)  # '#' and '_' are not in the vocabulary
    assert edges.tolist() == [10, 20, 30, 30, 30, 40, 50]


@pytest.fixture(scope="module")
def engine() -> tuple[KokoroEngine, object]:
    from gateway.engines.base import Device, Lane

    engine = KokoroEngine("kokoro", KOKORO, cpu_model=_timed_path())
    return engine, engine.load(Device(Lane.cpu, threads=2))


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
@pytest.mark.slow
def test_engine_edges_are_monotonic_within_the_audio_one_per_phoneme(
    engine: tuple[KokoroEngine, object], speed: float
) -> None:
    kokoro, handle = engine
    text = " ".join(TEXTS)
    units = kokoro.plan(text, "jf_alpha", speed, first_alone=True, timed=True)
    assert len(units) == 2 and all(u.timed for u in units)
    for unit in units:
        result = kokoro.run(handle, unit)
        assert isinstance(result, TimedAudio) and result.edges is not None
        edges, audio = result.edges, result.audio
        assert len(edges) == len(unit.phonemes) + 1
        assert edges[0] >= 0 and bool(np.all(np.diff(edges) >= 0))
        # the phonemes end before the pause appended after them
        assert edges[-1] <= len(audio) - int(unit.pause_s * kokoro.sample_rate)
        # the plain path returns the same samples, as a bare array
        plain = kokoro.run(handle, SpeechUnit(unit.phonemes, unit.style, speed, unit.pause_s,
                                              unit.lang))  # fmt: skip
        assert isinstance(plain, np.ndarray)
        np.testing.assert_array_equal(plain, audio)
        # Every letter lasts at least a frame; only the silence trim can cut one to nothing,
        # where a unit's first or last sounds are quiet (the end of "audio" at speed 2)
        end = len(audio) - int(unit.pause_s * kokoro.sample_rate)
        letters = [i for i, ch in enumerate(unit.phonemes) if ch.isalpha()]
        assert all(edges[i + 1] > edges[i] for i in letters if edges[i + 1] > 0 and edges[i] < end)
        assert sum(edges[i + 1] > edges[i] for i in letters) >= 0.95 * len(letters)
        assert kokoro.audio_seconds(unit, result) == len(audio) / kokoro.sample_rate


@pytest.mark.slow
def test_engine_edges_scale_with_speed(engine: tuple[KokoroEngine, object]) -> None:
    kokoro, handle = engine
    spans = {}
    for speed in (0.5, 1.0, 2.0):
        (unit,) = kokoro.plan(TEXTS[1], "jf_alpha", speed, timed=True)
        result = kokoro.run(handle, unit)
        assert isinstance(result, TimedAudio) and result.edges is not None
        spans[speed] = int(result.edges[-1] - result.edges[0])
    # the durations are divided by the speed before rounding: about 2x apart each step
    assert 1.6 < spans[0.5] / spans[1.0] < 2.4 and 1.6 < spans[1.0] / spans[2.0] < 2.4, spans


@pytest.mark.slow
def test_a_users_own_folder_is_used_as_it_is(tmp_path: Path) -> None:
    """A local folder: its model with a `duration` output gives timings, one without refuses."""
    for name, source in (("timed", _timed_path()), ("plain", KOKORO / "model.onnx")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "kokoro-v1.0.onnx").symlink_to(source)
        (folder / "voices.npz").symlink_to(KOKORO / "voices.npz")
    store = ModelStore(tmp_path / "x", MANIFEST, {"kokoro": tmp_path / "timed"})
    variants = {v.lane: store.variant_path("kokoro", v.lane) for v in MANIFEST["kokoro"].variants}
    assert variants["cpu"][0] is None  # no model.timed.onnx there: the folder's model is used
    timed = family("kokoro").factory(MANIFEST["kokoro"], tmp_path / "timed", Settings(), variants)
    assert isinstance(timed, KokoroEngine) and timed.model_path.name == "kokoro-v1.0.onnx"
    assert timed.timings_available
    plain = KokoroEngine("kokoro", tmp_path / "plain")
    assert not plain.timings_available
    with pytest.raises(NoTimings):
        plain.plan("Hello.", "jf_alpha", 1.0, timed=True)
    assert plain.plan("Hello.", "jf_alpha", 1.0)  # untimed speech is unaffected


@pytest.mark.slow
def test_speech_task_gives_each_unit_its_audio_and_edges() -> None:
    """tasks.speech: a timed plan through the scheduler; `each_timed` and `first_timed` /
    `rest_timed` give TimedAudio per unit, the plain methods the same audio alone."""
    _timed_path()
    app = create_app(Settings())

    async def work(_client: object) -> tuple[list[TimedAudio], list[TimedAudio], list]:
        gw = app.state.gateway
        req = speech.SpeechInput("tts-1", " ".join(TEXTS), "jf_alpha", stream=True, timed=True)
        plan = await speech.plan(gw, req)
        each: list[TimedAudio] = []
        async with speech.start(gw, plan, None, 300) as job:
            await job.each_timed(each.append)
        async with speech.start(gw, plan, None, 300) as job:
            split = [await job.first_timed()] + [r async for r in job.rest_timed()]
        async with speech.start(gw, plan, None, 300) as job:
            plain = [await job.first()] + [a async for a in job.rest()]
        return each, split, [plan, plain]

    each, split, (plan, plain) = run_asgi(app, work)
    assert len(each) == len(split) == len(plan.units) == 2
    for unit, a, b, audio in zip(plan.units, each, split, plain, strict=True):
        assert a.edges is not None and len(a.edges) == len(unit.phonemes) + 1
        np.testing.assert_array_equal(a.edges, b.edges)  # deterministic
        np.testing.assert_array_equal(a.audio, audio)


def test_a_corrupt_timed_file_is_a_corrupt_model(tmp_path: Path) -> None:
    """The CPU lane loads the timed file: one that hashes wrong (same size) takes the model out,
    with the file named, as a corrupt main file does; a missing one only means no timings."""
    from gateway.runtime import Runtime

    from .test_gpu_variant import _verified, linked_models

    gw = Runtime(linked_models(tmp_path / "corrupt", TIMED.name))
    assert gw.models["kokoro"].engine is not None  # the size looked right
    _verified(gw)
    state = gw.models["kokoro"]
    assert state.engine is None and any(TIMED.name in p for p in state.problems), state.problems

    gw = Runtime(linked_models(tmp_path / "missing", TIMED.name, missing=True))
    _verified(gw)
    engine = gw.models["kokoro"].engine
    assert isinstance(engine, KokoroEngine) and engine.model_path.name == "model.onnx"
