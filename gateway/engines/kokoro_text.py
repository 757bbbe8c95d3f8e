"""The text half of Kokoro's planning: text -> the one phoneme string its units are cut from, and
when asked, the map from those phonemes back to the written words (text/words.py).

espeak-ng is process-global, so every call into it holds kokoro-onnx's own espeak lock.
"""

from __future__ import annotations

import phonemizer
from kokoro_onnx.tokenizer import Tokenizer, _espeak_lock

from ..text import japanese
from ..text.normalize import SpokenTooLong, normalize_text
from ..text.words import WordMap, chunk_map, english_map


def phonemize(
    tokenizer: Tokenizer,
    text: str,
    language: str,
    *,
    normalize: bool,
    max_spoken_chars: int | None,
    words: bool,
) -> tuple[str, WordMap | None]:
    """The phonemes of `text` (whitespace collapsed), and with `words` their map to the
    written words; raises SpokenTooLong, or RuntimeError/ValueError when the phonemizer
    refuses. The phonemes are the same with or without `words`."""
    spoken = normalize_text(text, language, max_spoken_chars) if normalize else text
    spoken = " ".join(spoken.split())
    word_map = None
    if language.startswith("ja"):
        english = _English(tokenizer)
        if words:
            phonemes, chunks = japanese.phonemize_words(spoken, english.words)
            phonemes = " ".join(phonemes.split())
            word_map = chunk_map(phonemes, chunks)
        else:
            phonemes = " ".join(japanese.phonemize(spoken, english.phonemes).split())
        return _bounded(phonemes, max_spoken_chars), word_map
    phonemes = " ".join(tokenizer.phonemize(spoken, language).split())
    if not normalize:
        _bounded(phonemes, max_spoken_chars)
    if words:

        def alone(word: str) -> str:
            return normalize_text(word, language) if normalize else word

        word_map = english_map(
            text, spoken, phonemes, alone, lambda ws: phonemize_each(tokenizer, ws, language)
        )
    return phonemes, word_map


def phonemize_each(tokenizer: Tokenizer, words: list[str], language: str) -> list[str]:
    """Each word phonemized alone, in one espeak pass."""
    if not words:
        return []
    with _espeak_lock:
        out = phonemizer.phonemize(words, language, preserve_punctuation=True, with_stress=True)
    return ["".join(p for p in ph if p in tokenizer.vocab).strip() for ph in out]


class _English:
    """Latin words inside Japanese text: English espeak."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def phonemes(self, run: str) -> str:
        return str(self.tokenizer.phonemize(run, "en-us"))

    def words(self, run: str) -> tuple[str, list[tuple[str, str]]]:
        phonemes = self.phonemes(run)
        found = english_map(
            run,
            run,
            " ".join(phonemes.split()),
            lambda w: w,
            lambda ws: phonemize_each(self.tokenizer, ws, "en-us"),
        )
        chunks = [
            (w, found.phonemes[a:b]) for w, (a, b) in zip(found.words, found.spans, strict=True)
        ]
        return phonemes, chunks


def _bounded(phonemes: str, limit: int | None) -> str:
    """Where no spoken text was measured against `limit` (the Japanese G2P reads numbers itself,
    and `normalize` off leaves them to espeak), the phonemes are: 4,096 characters of Japanese
    prose are 2.8 phonemes a character, of kanji compounds 3.5, of digits 4.5."""
    if limit is not None and len(phonemes) > limit:
        raise SpokenTooLong(limit)
    return phonemes
