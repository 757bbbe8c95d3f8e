"""Chat text -> the words a person would read aloud, before phonemization.

Open WebUI sends assistant replies as written: Markdown, emoji, URLs, numbers. Read literally that
is "asterisk asterisk" and "h t t p s colon slash slash". Two layers:

* Markdown (any language), with markdown-it-py: emphasis and headings become plain text, each
  block ends as a sentence, code blocks are announced, images give their alt text, links keep
  their text, bare URLs and e-mail addresses are spoken short (`github dot com`), tables are read
  row by row. Emoji are dropped (a text of nothing but emoji has nothing to
  speak, as before).
* English only: numbers, ordinals, currency, percentages, dates, times, phone numbers and units
  as words (`numbers.py`). Other languages keep their numbers: espeak-ng and OpenJTalk read them.

Normalization works sentence by sentence and keeps every sentence's end, so it never merges or
drops sentences, and the first-sentence cut that starts a stream early still holds.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import emoji
from markdown_it import MarkdownIt
from markdown_it.token import Token

from .numbers import verbalize_numbers
from .text import speakable, split_sentences

_MD = MarkdownIt("commonmark", {"linkify": True}).enable(["table", "strikethrough", "linkify"])
_STOPS = ".!?…。！？:;"
_ABBREVIATIONS = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "approx.": "approximately",
    "w/": "with",
}
_SYMBOLS = {
    "&": " and ",
    "@": " at ",
    "+": " plus ",
    "=": " equals ",
    "×": " times ",
    "±": " plus or minus ",
    "→": " to ",
    "->": " to ",
    "=>": " to ",
    "<=": " at most ",
    ">=": " at least ",
    "≈": " about ",
    "%": " percent ",
}

_ABBREV_RE = re.compile("|".join(re.escape(a) for a in _ABBREVIATIONS))
_SYMBOL_RE = re.compile("|".join(re.escape(s) for s in sorted(_SYMBOLS, key=len, reverse=True)))


def normalize_text(text: str, lang: str, limit: int | None = None) -> str:
    """The words to speak for `text` in phonemizer language `lang` (see the module doc); raises
    SpokenTooLong as soon as the words pass `limit` characters."""
    english = lang.startswith("en")
    out: list[str] = []
    size = -1  # the joining spaces: one fewer than the sentences
    for block in markdown_blocks(text):
        if english:
            block = _end_sentence(_ABBREV_RE.sub(_abbreviation, block))
        for sentence in split_sentences(block):
            spoken = speak_sentence(sentence, english)
            if spoken:
                out.append(spoken)
                size += len(spoken) + 1
                if limit is not None and size > limit:
                    raise SpokenTooLong(limit)
    return " ".join(out)


class SpokenTooLong(ValueError):
    """The text read aloud (numbers, symbols and links as words) is longer than a bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"read aloud, the input is longer than {limit} characters")
        self.limit = limit


def _abbreviation(match: re.Match[str]) -> str:
    """`etc.` -> `et cetera`, keeping the full stop where it also ends a sentence."""
    words = _ABBREVIATIONS[match.group(0)]
    rest = match.string[match.end() :].lstrip()
    ends = match.group(0).endswith(".") and (not rest or rest[0].isupper())
    return words + "." if ends else words


# -- Markdown ---------------------------------------------------------------------------------


def markdown_blocks(text: str) -> list[str]:
    """Markdown -> one string per block (heading, paragraph, list item, table row), each ending
    as a sentence."""
    blocks: list[str] = []
    row: list[str] | None = None
    for token in _MD.parse(text):
        if token.type in ("fence", "code_block"):
            blocks.append("Code block.")
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            cells = [c for c in row if c]
            if cells:
                blocks.append(", ".join(c.rstrip(_STOPS + ",") for c in cells) + ".")
            row = None
        elif token.type == "inline":
            spoken = _inline(token.children or [])
            if row is not None:
                row.append(spoken.strip())
            elif speakable(spoken):
                blocks.append(_end_sentence(spoken))
    return blocks


def _inline(children: list[Token]) -> str:
    parts: list[str] = []
    link: list[str] | None = None  # text parts of the open link
    href = ""
    for tok in children:
        if tok.type == "link_open":
            link, href = [], str(tok.attrs.get("href", ""))
            continue
        if tok.type == "link_close" and link is not None:
            label = "".join(link).strip()
            bare = tok.markup in ("linkify", "autolink") or label in (
                href,
                href.removeprefix("mailto:"),
            )
            parts.append(f" {speak_link(href)} " if bare or not label else label)
            link = None
            continue
        if tok.type in ("text", "html_inline"):
            piece = tok.content if tok.type == "text" else ""
        elif tok.type == "code_inline":
            piece = "".join(ch if ch.isalnum() or ch in " .'" else " " for ch in tok.content)
        elif tok.type in ("softbreak", "hardbreak"):
            piece = " "
        elif tok.type == "image":
            piece = f" image: {tok.content}, " if tok.content else " "
        else:  # emphasis, strikethrough open/close: no sound
            piece = ""
        (link if link is not None else parts).append(piece)
    return " ".join("".join(parts).split())


def speak_link(href: str) -> str:
    """A URL -> its host, spoken (`github dot com`); `mailto:` -> `ann at example dot com`."""
    if href.startswith("mailto:"):
        user, _, host = href.removeprefix("mailto:").partition("@")
        return f"{_dotted(user)} at {_dotted(host)}"
    host = urlsplit(href if "//" in href else "//" + href).hostname or href
    return _dotted(host.removeprefix("www."))


def _dotted(name: str) -> str:
    return " dot ".join(p for p in re.split(r"[.]", name.replace("_", " ").replace("-", " ")) if p)


def _end_sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1] in _STOPS else text + "."


# -- English sentences ------------------------------------------------------------------------


def speak_sentence(sentence: str, english: bool) -> str:
    """One sentence -> spoken words; keeps a sentence-ending mark if the sentence had one."""
    text = emoji.replace_emoji(sentence, replace=" ")
    if english:
        text = verbalize_numbers(text)
        text = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group(0)], text)
        text = re.sub(r"(?<=[A-Za-z])/(?=[A-Za-z])", " or ", text)
    text = " ".join(re.sub(r"[*_#`|~<>\\^{}\[\]]+", " ", text).split())
    text = re.sub(r"\s+(?=[,.!?;:])|(?<=,)\s*,", "", text).strip(" ,")
    if not speakable(text):
        return ""
    end = sentence.rstrip()[-1:]
    if end in _STOPS and text[-1] not in _STOPS:
        text += end
    return text
