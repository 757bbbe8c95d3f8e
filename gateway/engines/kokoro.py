"""Kokoro text-to-speech on ONNX Runtime, through kokoro-onnx.

The gateway builds the InferenceSession itself (providers, thread counts, the CUDA arena cap) and
hands it to `kokoro_onnx.Kokoro.from_session`. A request is cut into work units of phoneme
batches; the first unit is one sentence, so streaming starts as soon as it is spoken.

Timings: the CPU lane loads the timed model (`model.timed.onnx`, derived by `gateway models pull`,
see registry/timed.py), whose second output `duration` gives the frames of every phoneme. A unit
with `timed=True` then returns `TimedAudio` (its audio and each phoneme character's sample
offsets); an untimed unit returns the bare audio array, as it always has.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack, cast

import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
from kokoro_onnx.chunker import pause_after, split_phonemes
from kokoro_onnx.config import MAX_PHONEME_LENGTH, SAMPLE_RATE
from kokoro_onnx.tokenizer import Tokenizer

from ..text.normalize import SpokenTooLong
from ..text.text import detect_lang
from ..text.words import WordMap
from . import kokoro_text
from .base import Device
from .cuda import high_priority_stream
from .memory import release_free_memory
from .timing import TimedAudio, char_edges, has_durations

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
    "marin", "cedar",
)  # fmt: skip
# Which gender of voice an OpenAI name is mapped to when the pack has no voice of that name.
_OPENAI_GENDER = {
    "alloy": "f", "ash": "m", "ballad": "m", "coral": "f", "echo": "m", "fable": "m",
    "nova": "f", "onyx": "m", "sage": "f", "shimmer": "f", "verse": "m", "marin": "f", "cedar": "m",
}  # fmt: skip
_TERM = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*(?:\(\s*([0-9]*\.?[0-9]+)\s*\))?\s*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+")
MAX_VOICE_TERMS = 8


class VoiceError(ValueError):
    """The voice (or a mix) names no installed voice, or is malformed."""


class NothingToSpeak(ValueError):
    """The input produced no phonemes."""


class NoTimings(ValueError):
    """Timings were asked of a model that reports no phoneme durations."""


class PlanOptions(TypedDict, total=False):
    """How `plan` and `plan_words` read a text; their defaults are `_plan`'s, set there once."""

    normalize: bool
    first_alone: bool
    max_spoken_chars: int | None


@dataclass(frozen=True)
class SpeechUnit:
    phonemes: str
    style: np.ndarray
    speed: float
    pause_s: float
    lang: str
    # Ask for phoneme timings: `KokoroEngine.run` then returns TimedAudio instead of an array.
    timed: bool = False


# lane variants (model.gpu.onnx, .fp16.onnx, .timed.onnx) are never a user folder's main model
VARIANTS = (".gpu.onnx", ".fp16.onnx", ".timed.onnx")


def find_files(folder: Path) -> tuple[Path, Path]:
    """The ONNX model and voice pack in a model folder (ours, or a user's own layout)."""
    model = folder / "model.onnx"
    if not model.is_file():
        # a lane variant (model.gpu.onnx) is never the CPU's model
        candidates = sorted(p for p in folder.glob("*.onnx") if not p.name.endswith(VARIANTS))
        if not candidates:
            raise FileNotFoundError(f"no .onnx model in {folder}")
        model = candidates[0]
    voices = folder / "voices.npz"
    if not voices.is_file():
        candidates = sorted([*folder.glob("voices*.bin"), *folder.glob("*.npz")])
        if not candidates:
            raise FileNotFoundError(f"no voice pack (voices*.bin / *.npz) in {folder}")
        voices = candidates[0]
    return model, voices


def cpu_session_options(threads: int) -> ort.SessionOptions:
    """The CPU lane's ONNX Runtime session options; the benchmarks' raw Kokoro baseline uses
    the same, so that their ratio measures the gateway and not a thread setting."""
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    # Idle pool threads sleep instead of spinning between nodes: a spinning thread at normal
    # priority holds a core that niced batch work (Whisper) could use, and on a shared machine
    # it competes with everything else (measured on 2 busy cores: a sentence 2.9 s without
    # spinning against 3.7 s with it).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# After a run on at least this many tokens, ONNX Runtime's CPU arena gives back its free chunks:
# the arena otherwise keeps the largest unit's peak for good (about 0.4 GiB after a 250-phoneme
# unit), and a 60-phoneme sentence would reuse little of it. Shorter runs keep the arena warm.
SHRINK_FROM_TOKENS = 100


class _ShrinkingSession:
    """The InferenceSession kokoro-onnx calls `run` on, with the arena shrunk after long runs."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: Any, feed: dict[str, np.ndarray], options: Any = None) -> Any:
        tokens = next(iter(feed.values()))
        if options is not None or tokens.shape[-1] < SHRINK_FROM_TOKENS:
            return self._session.run(output_names, feed, options)
        try:
            return self._session.run(output_names, feed, self._shrink)
        finally:
            release_free_memory()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclass(frozen=True)
class GpuOptions:
    """How the GPU lane runs Kokoro (see KokoroSettings for each field's meaning)."""

    # The GPU lane's file (fp16 or float, by gpu_precision); None with `problem` saying why not.
    model: Path | None = None
    problem: str | None = "no GPU variant configured"
    conv_algo_search: str = "HEURISTIC"
    threads: int = 2
    stream_priority: bool = False


class KokoroEngine:
    family = "kokoro"
    gpu_capped = True
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_id: str,
        folder: Path,
        default_lang: str = "en-us",
        sentence_pause_s: float = 0.25,
        max_unit_phonemes: int = 250,
        gpu: GpuOptions | None = None,
        cpu_model: Path | None = None,
    ) -> None:
        """`cpu_model`: the CPU lane's file when it is not the folder's main model (the timed
        variant); a user's own folder is used as it is."""
        self.model_id = model_id
        self.folder = folder
        self.model_path, self.voices_path = find_files(folder)
        if cpu_model is not None:
            self.model_path = cpu_model
        self._timed: bool | None = None
        self.gpu = gpu or GpuOptions()
        with np.load(self.voices_path) as pack:
            self.voices: dict[str, np.ndarray] = {k: pack[k].astype(np.float32) for k in pack.files}
        if not self.voices:
            raise FileNotFoundError(f"voice pack {self.voices_path} holds no voices")
        self.default_lang = default_lang
        self.sentence_pause_s = sentence_pause_s
        self.max_unit_phonemes = min(max_unit_phonemes, MAX_PHONEME_LENGTH)
        self._tokenizer: Tokenizer | None = None
        self._tokenizer_lock = threading.Lock()

    # -- voices ---------------------------------------------------------------------------------

    def voice_ids(self) -> list[str]:
        return sorted(self.voices)

    def openai_voice(self, name: str) -> str:
        """Map an OpenAI voice name to an installed voice, the same way every time."""
        ids = self.voice_ids()
        for vid in ids:
            if vid.split("_", 1)[-1] == name:
                return vid
        gender = _OPENAI_GENDER[name]
        same = [v for v in ids if v[1:2] == gender] or ids
        return same[OPENAI_VOICES.index(name) % len(same)]

    def resolve_voice(self, voice: str) -> tuple[list[str], np.ndarray]:
        """`name`, `a+b` or `a(2)+b(1)` -> (voice ids, style array); raises VoiceError."""
        terms = voice.split("+")
        if not voice.strip() or len(terms) > MAX_VOICE_TERMS:
            raise VoiceError(
                f"voice {voice!r} is empty or mixes more than {MAX_VOICE_TERMS} voices"
            )
        ids: list[str] = []
        weights: list[float] = []
        for term in terms:
            match = _TERM.match(term)
            if not match:
                raise VoiceError(f"malformed voice term {term!r}; use `a+b` or `a(2)+b(1)`")
            name, weight = match.group(1), float(match.group(2) or 1.0)
            if weight <= 0 or not np.isfinite(weight):
                raise VoiceError(f"voice weight for {name!r} must be positive")
            if name in OPENAI_VOICES and name not in self.voices:
                name = self.openai_voice(name)
            if name not in self.voices:
                raise VoiceError(
                    f"voice {name!r} is not installed; available: {', '.join(self.voice_ids())} "
                    f"and the OpenAI names {', '.join(OPENAI_VOICES)}"
                )
            ids.append(name)
            weights.append(weight)
        total = sum(weights)
        style = sum(self.voices[n] * (w / total) for n, w in zip(ids, weights, strict=True))
        return ids, np.asarray(style, dtype=np.float32)

    @property
    def timings_available(self) -> bool:
        """Whether the CPU lane's model reports phoneme durations (read once, about 0.3 s: call
        it off the event loop; `plan(timed=True)` does)."""
        if self._timed is None:
            self._timed = has_durations(self.model_path)
        return self._timed

    # -- planning (cheap, off the event loop but outside the scheduler) -------------------------

    def tokenizer(self) -> Tokenizer:
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer()
            return self._tokenizer

    def plan(
        self,
        text: str,
        voice: str,
        speed: float,
        lang: str | None = None,
        *,
        timed: bool = False,
        **options: Unpack[PlanOptions],
    ) -> list[SpeechUnit]:
        """Phonemize and cut into units under the limit; with `first_alone` (streaming) the
        first sentence is a unit of its own, so its audio goes out before the rest is made.
        Otherwise sentences share units: each call has a fixed cost (about 50 ms on a GPU, a
        few percent on the CPU), and within a unit the model paces sentences itself.

        `normalize` first turns Markdown, emoji, URLs and (in English) numbers into the words a
        person would read (see `normalize.py`), at most `max_spoken_chars` of them (else
        SpokenTooLong). Japanese goes through the Japanese G2P the voices
        were trained with, its Latin words through English espeak.

        `timed` marks every unit to return TimedAudio from `run`; NoTimings if the model cannot.

        The model takes up to 510 phonemes, but its activations grow with the batch: 250-phoneme
        units peak about 0.5 GiB lower on a long text, and yield the lane sooner."""
        return self._plan(text, voice, speed, lang, timed=timed, words=False, **options)[0]

    def plan_words(
        self, text: str, voice: str, speed: float, lang: str | None = None,
        **options: Unpack[PlanOptions],
    ) -> tuple[list[SpeechUnit], WordMap]:  # fmt: skip
        """`plan(timed=True)` (the same units), and the map of their phonemes to the words
        of `text` as written (text/words.py)."""
        units, words = self._plan(text, voice, speed, lang, timed=True, words=True, **options)
        return units, cast(WordMap, words)

    def _plan(
        self, text: str, voice: str, speed: float, lang: str | None, *, timed: bool,
        words: bool, normalize: bool = True, first_alone: bool = False,
        max_spoken_chars: int | None = None,
    ) -> tuple[list[SpeechUnit], WordMap | None]:  # fmt: skip
        if timed and not self.timings_available:
            raise NoTimings(f"the model of {self.model_id} reports no phoneme durations")
        ids, style = self.resolve_voice(voice)
        language = detect_lang(text, ids, self.default_lang, lang)
        try:
            phonemes, word_map = kokoro_text.phonemize(
                self.tokenizer(),
                text,
                language,
                normalize=normalize,
                max_spoken_chars=max_spoken_chars,
                words=words,
            )
        except SpokenTooLong:
            raise
        except (RuntimeError, ValueError) as exc:
            raise NothingToSpeak(f"cannot phonemize for language {language!r}: {exc}") from exc
        if not any(ch.isalpha() for ch in phonemes):
            raise NothingToSpeak("input has nothing to speak")
        parts = _SENTENCE_SPLIT.split(phonemes, maxsplit=1) if first_alone else [phonemes]
        batches = [b for part in parts for b in split_phonemes(part, self.max_unit_phonemes)]
        units = []
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            pause = 0.0 if last else pause_after(batch, self.sentence_pause_s, 0.1)
            units.append(SpeechUnit(batch, style, speed, pause, language, timed))
        return units, word_map

    # -- runtime --------------------------------------------------------------------------------

    def gpu_support(self) -> tuple[bool, str]:
        providers = ort.get_available_providers()
        if "CUDAExecutionProvider" not in providers:
            return False, f"onnxruntime {ort.__version__} has no CUDA provider ({providers})"
        if self.gpu.model is None:
            # The int8 model on CUDA runs its integer ops on the CPU, slower than the CPU lane.
            return False, f"no float GPU variant: {self.gpu.problem}"
        return True, (
            f"onnxruntime {ort.__version__} lists CUDAExecutionProvider; "
            f"GPU variant {self.gpu.model.name}"
        )

    def variants(self) -> dict[str, str | None]:
        """The model file each lane loads (None: that lane cannot run this model)."""
        return {"cpu": self.model_path.name, "gpu": self.gpu.model.name if self.gpu.model else None}

    def load(self, device: Device) -> Any:
        providers: list[Any]
        path = self.model_path
        if device.lane == "gpu":
            if self.gpu.model is None:
                raise RuntimeError(f"CUDA: no GPU variant of {self.model_id}: {self.gpu.problem}")
            path = self.gpu.model
            options = ort.SessionOptions()
            options.inter_op_num_threads = 1
            # A few nodes (shape arithmetic, STFT pieces) stay on the CPU; one thread starves them.
            options.intra_op_num_threads = self.gpu.threads
            cuda = {
                "device_id": device.index,
                "arena_extend_strategy": "kSameAsRequested",
                # Every new text length is a new input shape; EXHAUSTIVE benchmarks every conv
                # algorithm for each one (about 1 s per new length on an H200).
                "cudnn_conv_algo_search": self.gpu.conv_algo_search,
            }
            if device.gpu_mem_limit_mib:
                cuda["gpu_mem_limit"] = device.gpu_mem_limit_mib * 1024 * 1024
            stream = high_priority_stream(device.index) if self.gpu.stream_priority else None
            if stream:
                cuda["user_compute_stream"] = str(stream)
            providers = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            options = cpu_session_options(device.threads)
            providers = ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), options, providers=providers)
        if device.lane == "gpu" and "CUDAExecutionProvider" not in session.get_providers():
            raise RuntimeError("CUDA provider failed to load in onnxruntime (see `gateway doctor`)")
        kokoro = Kokoro.from_session(session, str(self.voices_path))
        if device.lane == "cpu":
            kokoro.sess = _ShrinkingSession(session)
        return kokoro

    def run(self, handle: Any, payload: SpeechUnit) -> np.ndarray | TimedAudio:
        """The unit's audio; for a `timed` unit, TimedAudio (its audio and phoneme edges)."""
        audio, token_edges = handle._create_batch(
            payload.phonemes, payload.style, payload.speed, True, payload.pause_s
        )
        audio = np.asarray(audio, dtype=np.float32)
        if not payload.timed:
            return audio
        if token_edges is None:
            return TimedAudio(audio, None)
        return TimedAudio(audio, char_edges(payload.phonemes, token_edges, handle.tokenizer.vocab))

    def unload(self, handle: Any) -> None:
        del handle

    def audio_seconds(self, payload: SpeechUnit, result: np.ndarray | TimedAudio) -> float:
        audio = result.audio if isinstance(result, TimedAudio) else result
        return len(audio) / SAMPLE_RATE
