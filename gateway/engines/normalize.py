"""Chat text -> the words a person would read aloud, before phonemization.

Open WebUI sends assistant replies as written: Markdown, emoji, URLs, numbers. Read literally that
is "asterisk asterisk" and "h t t p s colon slash slash". Two layers:

* Markdown (any language), with markdown-it-py: emphasis and headings become plain text, each
  block ends as a sentence, code blocks are announced, images give their alt text, links keep
  their text, bare URLs and e-mail addresses are spoken short (`github dot com`), tables are read
  row by row. Emoji are dropped (a text of nothing but emoji has nothing to
  speak, as before).
* English only: numbers, ordinals, currency, percentages, dates, times, phone numbers and units
  as words, with num2words. Other languages keep their numbers: espeak-ng and OpenJTalk read them.

Normalization works sentence by sentence and keeps every sentence's end, so it never merges or
drops sentences, and the first-sentence cut that starts a stream early still holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import emoji
from markdown_it import MarkdownIt
from markdown_it.token import Token
from num2words import num2words

from .text import speakable, split_sentences

_MD = MarkdownIt("commonmark", {"linkify": True}).enable(["table", "strikethrough", "linkify"])
_STOPS = ".!?…。！？:;"
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_RE = "|".join(_MONTHS) + "|" + "|".join(m[:3] for m in _MONTHS) + "|Sept"

# Unit symbol -> (singular, plural). Matched case-sensitively after a number.
_UNITS = {
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pounds", "pounds"),
    "oz": ("ounce", "ounces"),
    "L": ("liter", "liters"),
    "l": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hours", "hours"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "px": ("pixel", "pixels"),
    "fps": ("frame per second", "frames per second"),
    "x": ("times", "times"),
}
_CURRENCY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
_SCALES = {
    "k": "thousand",
    "K": "thousand",
    "M": "million",
    "m": "million",
    "B": "billion",
    "bn": "billion",
    "thousand": "thousand",
    "million": "million",
    "billion": "billion",
    "trillion": "trillion",
}
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

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_SCALE_RE = "|".join(sorted(_SCALES, key=len, reverse=True))
# One pass over an English sentence: the first alternative that matches at a place wins.
_PATTERNS: list[tuple[str, str]] = [
    ("iso_date", r"\b(\d{4})-(\d{2})-(\d{2})\b"),
    ("us_date", r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b"),
    ("month_day", rf"\b({_MONTH_RE})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?:,? (\d{{4}})\b)?"),
    ("day_month", rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MONTH_RE})\b(?:,? (\d{{4}})\b)?"),
    ("time", r"\b(\d{1,2}):(\d{2})(?::\d{2})?(?:\s?([AaPp])\.?[Mm]\b\.?)?"),
    ("ampm", r"\b(\d{1,2})\s?([AaPp])\.?[Mm]\b\.?"),
    ("phone", r"(?<![\w-])(\+\d{1,3}[\s.-]?)?(\(\d{3}\)\s?|\d{3}[\s.-])(\d{3})[\s.-](\d{4})\b"),
    ("money", rf"([$€£¥])\s?({_NUM})(?:\s?({_SCALE_RE})\b)?"),
    ("percent", rf"({_NUM})\s?%"),
    ("ordinal", r"\b(\d+)(st|nd|rd|th)\b"),
    ("version", r"\b[vV]?(\d+(?:\.\d+){2,})\b"),
    ("range", rf"\b({_NUM})\s?[–-]\s?({_NUM})(?:\s?({_UNIT_RE}))?(?![\w/])"),
    ("unit", rf"(?<![\w.])(-?)({_NUM})\s?({_UNIT_RE})(?![\w/])"),
    ("year", r"\b(in|since|by|from|until|before|after|of|year|to|and) (1[1-9]\d\d|20\d\d)s?\b"),
    ("hash", r"#(\d+)"),
    ("number", rf"(?<![\w.])(-?)({_NUM})\b"),
]
_MASTER = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS))
_ABBREV_RE = re.compile("|".join(re.escape(a) for a in _ABBREVIATIONS))
_SYMBOL_RE = re.compile("|".join(re.escape(s) for s in sorted(_SYMBOLS, key=len, reverse=True)))


def normalize_text(text: str, lang: str) -> str:
    """The words to speak for `text` in phonemizer language `lang` (see the module doc)."""
    english = lang.startswith("en")
    out = []
    for block in markdown_blocks(text):
        if english:
            block = _end_sentence(_ABBREV_RE.sub(_abbreviation, block))
        for sentence in split_sentences(block):
            spoken = speak_sentence(sentence, english)
            if spoken:
                out.append(spoken)
    return " ".join(out)


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
        text = _MASTER.sub(_verbalize, text)
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


def _verbalize(match: re.Match[str]) -> str:
    kind = match.lastgroup or "number"
    groups = [g for g in match.groups() if g is not None]
    # the named group itself comes first in groups(); the captures follow it
    return " " + _HANDLERS[kind](*groups[1:]) + " "


def cardinal(number: str) -> str:
    """`1,234.5` -> `one thousand two hundred thirty-four point five` (American style)."""
    words = str(num2words(float(number) if "." in number else int(number.replace(",", ""))))
    return " ".join(words.replace(",", "").replace(" and ", " ").split())


def _num(number: str) -> str:
    return cardinal(number.replace(",", ""))


def _ordinal(n: str) -> str:
    return str(num2words(int(n), to="ordinal"))


def _year(y: str) -> str:
    return str(num2words(int(y), to="year")).replace(" and ", " ")


def _month(name: str) -> str:
    return next((m for m in _MONTHS if m.lower().startswith(name.lower()[:3])), name)


def _date(year: str, month: int, day: str) -> str:
    if not 1 <= month <= 12:
        return f"{_num(year)} {_num(str(month))} {_num(day)}"
    return f"{_MONTHS[month - 1]} {_ordinal(day)}, {_year(year)}"


def _time(h: str, m: str, ampm: str = "") -> str:
    minutes = "" if m == "00" else (f"oh {_num(m)}" if m.startswith("0") else _num(m))
    if not minutes:
        minutes = "" if ampm else ("hundred" if int(h) > 12 else "o'clock")
    suffix = f" {ampm.lower()} m" if ampm else ""
    return f"{_num(h)} {minutes}".strip() + suffix


def _digits(group: str) -> str:
    return " ".join(_num(d) for d in group if d.isdigit())


def _phone(country: str, area: str, mid: str = "", last: str = "") -> str:
    if not last:  # no country code: the captures shifted left
        country, area, mid, last = "", country, area, mid
    parts = [f"plus {_digits(country)}"] if country else []
    parts += [_digits(area), _digits(mid), _digits(last)]
    return ", ".join(parts)


def _money(symbol: str, amount: str, scale: str = "") -> str:
    one, many, sub_one, sub_many = _CURRENCY[symbol]
    if scale:
        return f"{_num(amount)} {_SCALES[scale]} {many}"
    whole, _, cents = amount.replace(",", "").partition(".")
    words = f"{_num(whole)} {one if whole == '1' else many}"
    if cents.strip("0") and sub_one:
        c = cents[:2].ljust(2, "0")
        words += f" and {_num(c)} {sub_one if int(c) == 1 else sub_many}"
    return words


def _unit(*args: str) -> str:
    sign, number, unit = args if len(args) == 3 else ("", *args)
    one, many = _UNITS[unit]
    prefix = "minus " if sign else ""
    return f"{prefix}{_num(number)} {one if number == '1' else many}"


def _range(a: str, b: str, unit: str = "") -> str:
    words = f"{_num(a)} to {_num(b)}"
    return f"{words} {_UNITS[unit][1]}" if unit else words


def _signed(*args: str) -> str:
    sign, number = args if len(args) == 2 else ("", *args)
    return ("minus " if sign else "") + _num(number)


_HANDLERS: dict[str, Callable[..., str]] = {
    "iso_date": lambda y, m, d: _date(y, int(m), d),
    "us_date": lambda m, d, y: _date(y, int(m), d),
    "month_day": lambda mon, d, y="": (
        f"{_month(mon)} {_ordinal(d)}" + (f", {_year(y)}" if y else "")
    ),
    "day_month": lambda d, mon, y="": (
        f"the {_ordinal(d)} of {_month(mon)}" + (f" {_year(y)}" if y else "")
    ),
    "time": _time,
    "ampm": lambda h, ap: f"{_num(h)} {ap.lower()} m",
    "phone": _phone,
    "money": _money,
    "percent": lambda n: f"{_num(n)} percent",
    "ordinal": lambda n, _suffix: _ordinal(n),
    "version": lambda v: " point ".join(_num(p) for p in v.split(".")),
    "range": _range,
    "unit": _unit,
    "year": lambda word, y: f"{word} {_year(y)}",
    "hash": lambda n: f"number {_num(n)}",
    "number": _signed,
}
