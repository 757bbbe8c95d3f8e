"""Japanese read as Japanese: the embedded voices speak Japanese text through the Japanese G2P they
were trained with, and Whisper base hears it back; Latin words inside it are read as English."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pyopenjtalk
import pytest
from kokoro_onnx.tokenizer import Tokenizer

from gateway.text.japanese import MAX_PIECE_CHARS, JapaneseG2P, phonemize, pieces, split_runs

from ..support.roundtrip import kokoro, speak, transcribe

SENTENCES = [
    "こんにちは。今日はとてもいい天気ですね。公園へ散歩に行きましょう。",
    "駅までは歩いて十分くらいかかります。",
    "新しいレストランで美味しいラーメンを食べました。",
    "明日の朝、友達と一緒に図書館で勉強する予定です。",
    "会議は三時から始まりますので、少し早めに来てください。",
]


def reading(text: str) -> str:
    """Katakana reading without punctuation or spaces. Whisper writes the same sound in other
    characters (散歩 as 3歩, 十分 as 10分, kana for kanji), so the error rate is counted on what
    is said, not how it is spelled: both sides are read by the same OpenJTalk dictionary."""
    text = unicodedata.normalize("NFKC", text)
    kana = pyopenjtalk.g2p(text, kana=True)
    return "".join(ch for ch in kana if unicodedata.category(ch)[0] == "L")


def cer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.cer(reading(reference), reading(hypothesis)))


def test_runs_split_latin_from_japanese() -> None:
    assert split_runs("このAPIはPython 3で書かれています。") == [
        ("この", False), ("API", True), ("は", False), ("Python 3", True),
        ("で書かれています。", False),
    ]  # fmt: skip


def test_mixed_text_uses_each_languages_g2p() -> None:
    english = Tokenizer().phonemize("Thank you very much", "en-us")
    phonemes = phonemize("今日は晴れです。Thank you very much", lambda t: Tokenizer().phonemize(t, "en-us"))
    assert phonemes.endswith(english.strip())
    assert phonemes.startswith("kʲoː βa haɾe desɨ.")  # misaki's romanizer, not espeak `ja`
    engine, _ = kokoro()
    units = engine.plan("今日は晴れです。Thank you very much.", "jf_alpha", 1.0)
    assert units[0].lang == "ja" and english.strip().rstrip(".") in " ".join(u.phonemes for u in units)


@pytest.mark.slow
def test_japanese_is_heard_back_as_japanese() -> None:
    text = "".join(SENTENCES)
    heard = transcribe(speak(text), "whisper-base", "ja")
    rate = cer(text, heard)
    print(f"\nCER {rate:.3f}: {heard}")
    assert rate <= 0.15, heard


@pytest.mark.slow
def test_numbers_and_english_words_inside_japanese() -> None:
    text = "会議は3月15日に行います。明日はGoogleで会議があります。Good morning. 今日は晴れです。"
    heard = transcribe(speak(text), "whisper-base", "ja")
    latin = re.compile(r"[A-Za-z]+")
    rate = cer(latin.sub("", text), latin.sub("", heard))
    english = {w.lower() for w in latin.findall(heard)}
    print(f"\nCER {rate:.3f}: {heard}")
    assert rate <= 0.15, heard
    assert {"google", "good", "morning"} <= english, heard


def test_long_digit_text_reaches_the_analyser_in_bounded_pieces(monkeypatch: Any) -> None:
    # Text of digits alone has no Latin letter, so it takes the Japanese path; one call with
    # thousands of words costs minutes there (quadratic), so every call gets a bounded piece.
    g2p = JapaneseG2P()
    seen: list[str] = []
    real = g2p._phonemize_piece

    def spy(piece: str) -> str:
        seen.append(piece)
        return real(piece)

    monkeypatch.setattr(g2p, "_phonemize_piece", spy)
    text = "1" * 4096 + "、" + "、".join(["12345"] * 300) + "。"
    phonemes = g2p.phonemize(text)
    assert seen and max(len(p) for p in seen) <= MAX_PIECE_CHARS
    assert "".join(seen).replace(" ", "") == text  # nothing dropped or repeated
    assert phonemes.count("iʨi") >= 4096  # a run past 15 digits is read digit by digit


def test_pieces_keep_clauses_and_numbers_whole() -> None:
    text = "円周率は3.14です。" + "会議は三時から始まりますので、少し早めに来てください。" * 3
    cut = pieces(text)
    assert "".join(cut) == text and all(len(p) <= MAX_PIECE_CHARS for p in cut)
    assert cut[0].startswith("円周率は3.14です。")  # not cut inside a number
    assert all(p.endswith(("。", "、")) for p in cut[:-1])  # cut after clause punctuation
    assert phonemize(SENTENCES[0], str) == JapaneseG2P().phonemize(SENTENCES[0])
