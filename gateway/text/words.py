"""From spoken phonemes back to the words the caller wrote, and from phoneme edges to word times.

Speech is planned as one phoneme string P for the whole text (normalized, then phonemized), cut
into work units. A `WordMap` says which characters of P belong to which written word:

* written -> spoken words: the written words are the caller's whitespace-separated words, less
  Markdown markup (link targets, `**`, `#`, table bars) and tokens with nothing to read; the
  spoken ones are the words of the normalized text. Words the same on both sides anchor the
  alignment; between anchors, a run of written words that normalization changed (`$5` -> `five
  dollars`, `e.g.` -> `for example`) is split word by word where each one normalized alone gives
  the same words, else reported as one entry (`5 km` spoken `five kilometers`).
* spoken words -> P characters: espeak writes one phoneme word per word, but joins some
  (`of the` -> `ʌvðə`); where the counts differ, each word is phonemized alone and the letters
  aligned to P's.

A word's characters run from its first phoneme letter (with the stress mark before it) to its
last, punctuation excluded: its time is from the start of its first phoneme to the end of its
last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

_LINK_TARGET = re.compile(r"\]\([^)\s]*\)|!\[")  # `[text](url)`: the url is not read
_MARKUP_ANYWHERE = re.compile(r"[*`~#|<>\\^{}\[\]]+")  # emphasis, code, headings, tables
_MARKUP_EDGES = "_()"
_STRESS = "ˈˌ"


@dataclass(frozen=True)
class WordMap:
    """`words[i]` as written; its phoneme characters are `phonemes[spans[i][0]:spans[i][1]]`."""

    phonemes: str
    words: list[str]
    spans: list[tuple[int, int]]

    def unit_pieces(self, units: Sequence[str]) -> list[list[tuple[int, int, int]]]:
        """Per unit (the unit phoneme strings P was cut into, in order): (word index, first
        character, end) in the unit's own string. A word a unit boundary cuts has a piece in
        each."""
        where = _unit_positions(self.phonemes, units)
        out: list[list[tuple[int, int, int]]] = []
        for positions in where:
            pieces = []
            lo = positions[0] if positions else 0
            hi = positions[-1] + 1 if positions else 0
            for w, (a, b) in enumerate(self.spans):
                if b <= lo or a >= hi:
                    continue
                inside = [k for k, p in enumerate(positions) if a <= p < b]
                if inside:
                    pieces.append((w, inside[0], inside[-1] + 1))
            out.append(pieces)
        return out


def _unit_positions(phonemes: str, units: Sequence[str]) -> list[list[int]]:
    """For each unit, the position in `phonemes` of each of its characters (the chunker only
    drops or adds whitespace)."""
    pos = 0
    out = []
    for unit in units:
        here = []
        for ch in unit:
            while pos < len(phonemes) and phonemes[pos] != ch and phonemes[pos].isspace():
                pos += 1
            if pos < len(phonemes) and phonemes[pos] == ch:
                here.append(pos)
                pos += 1
            else:  # a space the chunker put between two pieces of one run
                here.append(pos - 1)
        out.append(here)
    return out


# -- written -> spoken ------------------------------------------------------------------------


def written_words(text: str) -> list[str]:
    """The caller's words: whitespace-separated, Markdown markup off their edges, link targets
    dropped, and only tokens with a letter or digit."""
    out = []
    for token in _LINK_TARGET.sub(lambda m: "]" if m.group(0) != "![" else "", text).split():
        word = _MARKUP_ANYWHERE.sub("", token).strip(_MARKUP_EDGES)
        if any(ch.isalnum() for ch in word):
            out.append(word)
    return out


def _key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def written_to_spoken(
    written: list[str], spoken: list[str], normalize: Callable[[str], str]
) -> list[tuple[str, list[int]]]:
    """Each written word (or run of them normalization read together) with the indexes of its
    spoken words; written words with nothing spoken are left out."""
    wkeys = [_key(w) for w in written]
    skeys = [_key(s) for s in spoken]
    out: list[tuple[str, list[int]]] = []
    matcher = SequenceMatcher(None, wkeys, skeys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [(written[i1 + k], [j1 + k]) for k in range(i2 - i1)]
        elif tag == "replace":
            out += _split_run(written[i1:i2], skeys[j1:j2], j1, normalize)
        # "delete": written, not spoken (code in a code block); "insert": spoken only ("Code
        # block.", "image:"), no written word to report
    return out


def _split_run(
    written: list[str], skeys: list[str], first: int, normalize: Callable[[str], str]
) -> list[tuple[str, list[int]]]:
    """Written words normalization changed, matched to their spoken words: each alone where it
    reads the same alone (`$5` -> `five dollars`), else together with the words after it
    (`5 km` -> `five kilometers`); what is left over is one entry."""
    out: list[tuple[str, list[int]]] = []
    i, at = 0, 0
    while i < len(written):
        for n in range(1, len(written) - i + 1):
            keys = [k for k in map(_key, normalize(" ".join(written[i : i + n])).split()) if k]
            if keys and skeys[at : at + len(keys)] == keys:
                out.append(
                    (" ".join(written[i : i + n]), list(range(first + at, first + at + len(keys))))
                )
                i, at = i + n, at + len(keys)
                break
        else:
            if at < len(skeys):
                out.append((" ".join(written[i:]), list(range(first + at, first + len(skeys)))))
            break
    return out


# -- spoken -> phonemes -----------------------------------------------------------------------


def _letter(ch: str) -> bool:
    return ch.isalpha() and ch not in _STRESS


def _widen(phonemes: str, a: int, b: int) -> tuple[int, int]:
    """A letter span with the stress marks right before it."""
    while a > 0 and phonemes[a - 1] in _STRESS:
        a -= 1
    return a, b


def spoken_spans(
    phonemes: str, spoken: list[str], phonemize_words: Callable[[list[str]], list[str]]
) -> list[tuple[int, int] | None]:
    """Each spoken word's character span in `phonemes` (None: it got no letters)."""
    tokens = [
        (m.start(), m.end()) for m in re.finditer(r"\S+", phonemes) if any(map(_letter, m.group()))
    ]
    words = [i for i, w in enumerate(spoken) if any(ch.isalnum() for ch in w)]
    out: list[tuple[int, int] | None] = [None] * len(spoken)
    if len(tokens) == len(words):
        for i, (a, b) in zip(words, tokens, strict=True):
            out[i] = _letter_span(phonemes, range(a, b))
        return out
    # Phoneme words first (cheap: whole words compared), letters only where they differ.
    alone = ["".join(filter(_letter, ph)) for ph in phonemize_words([spoken[i] for i in words])]
    keys = ["".join(filter(_letter, phonemes[a:b])) for a, b in tokens]
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, alone, keys, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                out[words[i1 + k]] = _letter_span(phonemes, range(*tokens[j1 + k]))
        elif i2 > i1 and j2 > j1:  # joined or changed in context: align their letters
            at = [k for a, b in tokens[j1:j2] for k in range(a, b) if _letter(phonemes[k])]
            labels = [words[i] for i in range(i1, i2) for _ in alone[i]]
            owner = _align("".join(alone[i1:i2]), "".join(phonemes[k] for k in at), labels)
            first: dict[int, int] = {}
            last: dict[int, int] = {}
            for k, w in zip(at, owner, strict=True):
                first.setdefault(w, k)
                last[w] = k
            for w in first:
                if w >= 0:  # -1: letters of words espeak gave nothing alone
                    out[w] = _widen(phonemes, first[w], last[w] + 1)
    return out


def _letter_span(phonemes: str, where: range) -> tuple[int, int] | None:
    letters = [k for k in where if _letter(phonemes[k])]
    return _widen(phonemes, letters[0], letters[-1] + 1) if letters else None


def _align(q: str, r: str, labels: list[int]) -> list[int]:
    """The label of each character of `r`, from the character of `q` it aligns with: monotonic,
    so words stay in order and never overlap."""
    owner = [labels[0] if labels else -1] * len(r)
    if not labels:
        return owner
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, q, r, autojunk=False).get_opcodes():
        for k in range(j1, j2):
            if tag in ("equal", "replace") and i2 > i1:
                owner[k] = labels[i1 + (k - j1) * (i2 - i1) // (j2 - j1)]
            else:  # letters only in r: the word before has them
                owner[k] = labels[max(i1 - 1, 0)]
    return owner


def english_map(
    written_text: str,
    spoken_text: str,
    phonemes: str,
    normalize: Callable[[str], str],
    phonemize_words: Callable[[list[str]], list[str]],
) -> WordMap:
    spoken = spoken_text.split()
    spans = spoken_spans(phonemes, spoken, phonemize_words)
    words, word_spans = [], []
    for word, indexes in written_to_spoken(written_words(written_text), spoken, normalize):
        mine = [s for i in indexes if (s := spans[i]) is not None]
        if mine:
            words.append(word)
            word_spans.append((mine[0][0], mine[-1][1]))
    return WordMap(phonemes, words, word_spans)


def chunk_map(phonemes: str, chunks: list[tuple[str, str]]) -> WordMap:
    """Words given with their own phonemes, in order (the Japanese G2P's), found in `phonemes`
    (which joins them with other spacing); punctuation is no word of its own but ends the word
    before it."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for word, ph in chunks:
        if not any(ch.isalnum() for ch in word) or not any(map(_letter, ph)):
            pos = _skip(phonemes, pos, ph)
            if words and not word.isspace():  # 。 and 、 end the word before, as `.` would
                words[-1] += word.strip()
            continue
        start, end = _find(phonemes, pos, ph)
        if start is None:
            continue
        letters = [k for k in range(start, end) if _letter(phonemes[k])]
        words.append(word)
        spans.append(_widen(phonemes, letters[0], letters[-1] + 1))
        pos = end
    return WordMap(phonemes, words, spans)


def _find(phonemes: str, pos: int, piece: str) -> tuple[int | None, int]:
    """Where the non-space characters of `piece` are next in `phonemes`, spaces skipped."""
    want = [ch for ch in piece if not ch.isspace()]
    k, start = pos, None
    for ch in want:
        while k < len(phonemes) and phonemes[k].isspace():
            k += 1
        if k >= len(phonemes) or phonemes[k] != ch:
            return None, pos
        start = k if start is None else start
        k += 1
    return start, k


def _skip(phonemes: str, pos: int, piece: str) -> int:
    start, end = _find(phonemes, pos, piece)
    return pos if start is None else end
