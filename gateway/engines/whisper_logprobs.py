"""Per-token log probabilities of a decoded transcript (OpenAI's `include[]=logprobs`).

faster-whisper's decode keeps only each segment's average: CTranslate2's `generate` returns one
score per sequence (its per-step logits, `return_logits_vocab`, are not reachable through
faster-whisper's decode loop). CTranslate2's `align`, the pass faster-whisper runs for word
timestamps, returns the model's probability of every text token given the audio and the tokens
before it (teacher-forced, after the task's start tokens, without the prompt or keywords);
faster-whisper's word `probability` is the mean of these over a word's tokens. That is what is
given here, one entry per text token: the token's text, its log probability and its bytes.
It costs one more encoder pass per 30 s of audio, so only requests that ask pay it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

FRAMES = 3000  # mel frames of Whisper's 30 s input
_TINY = 1e-30  # a probability of 0 (underflow) gives a finite log


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (Whisper's tokenizer uses it): character -> byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def token_bytes(tokenizer: Tokenizer, token: int) -> bytes:
    """A token's own bytes (a piece of a UTF-8 character where BPE split one)."""
    piece = tokenizer.tokenizer.id_to_token(token) or ""
    table = _byte_decoder()
    return bytes(table[c] for c in piece if c in table)


def token_logprobs(handle: WhisperModel, audio: np.ndarray, segments: Iterable[tuple[int, list[int]]],
                   language: str, task: str) -> list[dict[str, Any]]:  # fmt: skip
    """`{token, logprob, bytes}` for every text token of `segments` ((seek in mel frames of
    `audio`, tokens) each, as decoded from `audio`), in order."""
    tokenizer = Tokenizer(handle.hf_tokenizer, handle.model.is_multilingual, task=task,
                          language=language)  # fmt: skip
    by_seek: dict[int, list[int]] = {}
    for seek, tokens in segments:
        by_seek.setdefault(seek, []).extend(t for t in tokens if t < tokenizer.eot)
    features = handle.feature_extractor(audio)
    content = features.shape[-1] - 1  # as faster-whisper's decode cuts it: its last frame unheard
    out: list[dict[str, Any]] = []
    for seek, text in by_seek.items():
        if not text:
            continue
        frames = max(min(FRAMES, content - seek), 1)
        encoded = handle.encode(pad_or_trim(features[:, seek : seek + frames]))
        result = handle.model.align(encoded, tokenizer.sot_sequence, [text], frames)[0]
        for token, p in zip(text, result.text_token_probs, strict=False):
            raw = token_bytes(tokenizer, token)
            out.append({"token": raw.decode("utf-8", errors="replace"),
                        "logprob": math.log(max(float(p), _TINY)), "bytes": list(raw)})  # fmt: skip
    return out
