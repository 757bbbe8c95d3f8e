"""Whisper's language names by code: the table of OpenAI Whisper's tokenizer (`LANGUAGES` in
`whisper/tokenizer.py`, MIT), keyed by the codes faster-whisper accepts (`jw` for Javanese, as
faster-whisper spells it). faster-whisper ships only the codes, so the names live here; a test
checks that both sets agree, so a new faster-whisper language cannot go without a name."""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGE_NAMES: dict[str, str] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}


@dataclass(frozen=True)
class Detection:
    """How a unit that names no language gets one: the deployment's language settings."""

    candidates: tuple[str, ...] = ()  # empty: any language
    default: str | None = None  # used when the choice is unsure
    threshold: float = 0.5  # probability at which a choice is sure
    segments: int = 1  # 30 s segments of speech detection may hear

    @property
    def pinned(self) -> str | None:
        """The one candidate, when there is one: no detection is needed."""
        return self.candidates[0] if len(self.candidates) == 1 else None

    def choose(self, probabilities: list[tuple[str, float]]) -> tuple[str, float]:
        """The language among the candidates with the highest probability, and that
        probability among the candidates; the default instead where it is below the threshold."""
        pool = [(code, p) for code, p in probabilities if code in (self.candidates or (code,))]
        total = sum(p for _, p in pool)
        code, p = max(pool, key=lambda item: item[1]) if pool else (self.default or "en", 0.0)
        sure = p / total if total > 0 else 0.0
        if self.default is not None and sure < self.threshold and code != self.default:
            # the default's own share, for the report (0 where it is no candidate)
            return self.default, next((q / total for c, q in pool if c == self.default), 0.0)
        return code, sure
