"""Japanese read as Japanese: the embedded voices speak Japanese text through the Japanese G2P they
were trained with, and Whisper base hears it back; Latin words inside it are read as English."""

from __future__ import annotations

import re
import unicodedata

import pyopenjtalk
from kokoro_onnx.tokenizer import Tokenizer

from gateway.engines.japanese import phonemize, split_runs

from .roundtrip import kokoro, speak, transcribe

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


def test_japanese_is_heard_back_as_japanese() -> None:
    text = "".join(SENTENCES)
    heard = transcribe(speak(text), "whisper-base", "ja")
    rate = cer(text, heard)
    print(f"\nCER {rate:.3f}: {heard}")
    assert rate <= 0.15, heard


def test_numbers_and_english_words_inside_japanese() -> None:
    text = "会議は3月15日に行います。明日はGoogleで会議があります。Good morning. 今日は晴れです。"
    heard = transcribe(speak(text), "whisper-base", "ja")
    latin = re.compile(r"[A-Za-z]+")
    rate = cer(latin.sub("", text), latin.sub("", heard))
    english = {w.lower() for w in latin.findall(heard)}
    print(f"\nCER {rate:.3f}: {heard}")
    assert rate <= 0.15, heard
    assert {"google", "good", "morning"} <= english, heard
