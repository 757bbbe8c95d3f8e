"""Text handling for speech: which phonemizer language a text needs, and sentence splitting.

The language must follow the text, not the voice: the embedded voices are Japanese, yet English
text through the Japanese phonemizer comes out as gibberish, while through the English one those
voices speak English word for word.
"""

from __future__ import annotations

import re
import unicodedata

# Kokoro voice id prefix -> espeak language (the voice pack's own convention).
VOICE_LANG = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}
LATIN_LANGS = {"en-us", "en-gb", "es", "fr-fr", "it", "pt-br"}

# Scripts that decide the language by themselves, in the order they are checked.
_SCRIPT_LANG = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CJK", "cmn"),  # Han without kana: Chinese
    ("DEVANAGARI", "hi"),
    ("CYRILLIC", "ru"),
    ("GREEK", "el"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("THAI", "th"),
)


def scripts(text: str) -> set[str]:
    """The Unicode script names (first word of each letter's name) present in text."""
    found = set()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            found.add(name.split(" ")[0])
    return found


def detect_lang(text: str, voice_ids: list[str], default_lang: str, explicit: str | None) -> str:
    """Explicit `lang` wins; then the text's script where it is unambiguous; then the voice;
    text with no letters at all gets `default_lang`."""
    if explicit:
        return explicit
    found = scripts(text)
    if not found:
        # No letters (digits, prices, symbols): no script names a language, and the voice's own
        # is no better a guess (a Japanese voice would read `$1,234.56` as Japanese).
        return default_lang
    for script, lang in _SCRIPT_LANG:
        if script in found:
            return lang
    voice_lang = VOICE_LANG.get(voice_ids[0][:1]) if voice_ids else None
    if "LATIN" in found:
        # Latin script: a Latin-language voice speaks its own language; any other voice
        # (e.g. the embedded Japanese ones) gets the configured default, English.
        return voice_lang if voice_lang in LATIN_LANGS else default_lang
    return voice_lang or default_lang


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"')\]]*\s+|(?<=[。！？])|\n{2,}")


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends, keeping the punctuation with its sentence."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


def complete_sentences(text: str) -> tuple[str, str]:
    """Text streamed in pieces: (the complete sentences so far, the unfinished rest). A sentence
    is complete once whitespace follows its end, so one cut between two pieces is not taken for
    the end."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() < len(text) or match.group(0):
            end = match.end()
    return text[:end], text[end:]


def speakable(text: str) -> bool:
    """True if the text has at least one letter or digit to speak."""
    return any(ch.isalnum() for ch in text)
