"""English numbers as words: cardinals, decimals, ordinals, currency, percentages, dates, times,
phone numbers, units and powers of ten, with num2words (see `normalize.py`).

Bounded whatever the caller sends: a whole number longer than MAX_WORD_DIGITS is read digit by
digit (num2words overflows near 10**306), digits after a point are read one by one as written
(never through a float), so no number raises and none reads as more than about ten characters
a digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

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

# Longest whole number read as words (999 trillion); longer ones are read digit by digit, as a
# person reads a serial number: num2words overflows near 10**306, and a long number in words
# takes about ten characters a digit.
MAX_WORD_DIGITS = 15
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
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
    ("percent", rf"(?<![\d,.])({_NUM})\s?%"),
    ("ordinal", r"\b(\d+)(st|nd|rd|th)\b"),
    ("version", r"\b[vV]?(\d+(?:\.\d+){2,})\b"),
    ("range", rf"\b({_NUM})\s?[–-]\s?({_NUM})(?:\s?({_UNIT_RE}))?(?![\w/])"),
    ("scientific", r"(?<![\w.])(-?)(\d+(?:\.\d+)?)[eE]([-+]?\d+)\b"),
    ("unit", rf"(?<![\w.])(-?)({_NUM})\s?({_UNIT_RE})(?![\w/])"),
    ("year", r"\b(in|since|by|from|until|before|after|of|year|to|and) (1[1-9]\d\d|20\d\d)s?\b"),
    ("hash", r"#(\d+)"),
    ("number", rf"(?<![\w.])(-?)({_NUM})\b"),
]
_MASTER = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS))


def verbalize_numbers(sentence: str) -> str:
    """Every number-like run in an English sentence, as words."""
    return _MASTER.sub(_verbalize, sentence)


def _verbalize(match: re.Match[str]) -> str:
    kind = match.lastgroup or "number"
    groups = [g for g in match.groups() if g is not None]
    # the named group itself comes first in groups(); the captures follow it
    return " " + _HANDLERS[kind](*groups[1:]) + " "


def cardinal(number: str) -> str:
    """`1,234.5` -> `one thousand two hundred thirty-four point five` (American style); the
    digits after the point one by one, as written (never through a float, which rounds them
    and overflows past 1e308)."""
    whole, _, fraction = number.replace(",", "").partition(".")
    words = _words(whole, "cardinal")
    return f"{words} point {spell(fraction)}" if fraction else words


def _words(digits: str, to: str) -> str:
    """A whole number in words, or digit by digit past MAX_WORD_DIGITS."""
    if len(digits.lstrip("0")) > MAX_WORD_DIGITS:
        return spell(digits)
    words = str(num2words(int(digits), to=to))
    return " ".join(words.replace(",", "").replace(" and ", " ").split())


def spell(digits: str) -> str:
    """`2024` -> `two zero two four`."""
    return " ".join(_DIGIT_WORDS[int(d)] for d in digits if d.isdecimal())


def _ordinal(n: str) -> str:
    return _words(n, "ordinal")


def _year(y: str) -> str:
    return _words(y, "year")


def _month(name: str) -> str:
    return next((m for m in _MONTHS if m.lower().startswith(name.lower()[:3])), name)


def _date(year: str, month: int, day: str) -> str:
    if not 1 <= month <= 12:
        return f"{cardinal(year)} {cardinal(str(month))} {cardinal(day)}"
    return f"{_MONTHS[month - 1]} {_ordinal(day)}, {_year(year)}"


def _time(h: str, m: str, ampm: str = "") -> str:
    minutes = "" if m == "00" else (f"oh {cardinal(m)}" if m.startswith("0") else cardinal(m))
    if not minutes:
        minutes = "" if ampm else ("hundred" if int(h) > 12 else "o'clock")
    suffix = f" {ampm.lower()} m" if ampm else ""
    return f"{cardinal(h)} {minutes}".strip() + suffix


def _phone(country: str, area: str, mid: str = "", last: str = "") -> str:
    if not last:  # no country code: the captures shifted left
        country, area, mid, last = "", country, area, mid
    parts = [f"plus {spell(country)}"] if country else []
    parts += [spell(area), spell(mid), spell(last)]
    return ", ".join(parts)


def _money(symbol: str, amount: str, scale: str = "") -> str:
    one, many, sub_one, sub_many = _CURRENCY[symbol]
    if scale:
        return f"{cardinal(amount)} {_SCALES[scale]} {many}"
    whole, _, cents = amount.replace(",", "").partition(".")
    words = f"{cardinal(whole)} {one if whole == '1' else many}"
    if cents.strip("0") and sub_one:
        c = cents[:2].ljust(2, "0")
        words += f" and {cardinal(c)} {sub_one if int(c) == 1 else sub_many}"
    return words


def _unit(*args: str) -> str:
    sign, number, unit = args if len(args) == 3 else ("", *args)
    one, many = _UNITS[unit]
    prefix = "minus " if sign else ""
    return f"{prefix}{cardinal(number)} {one if number == '1' else many}"


def _range(a: str, b: str, unit: str = "") -> str:
    words = f"{cardinal(a)} to {cardinal(b)}"
    return f"{words} {_UNITS[unit][1]}" if unit else words


def _scientific(sign: str, mantissa: str, exponent: str) -> str:
    power = ("minus " if exponent.startswith("-") else "") + cardinal(exponent.lstrip("+-"))
    return f"{_signed(sign, mantissa)} times ten to the power of {power}"


def _signed(*args: str) -> str:
    sign, number = args if len(args) == 2 else ("", *args)
    return ("minus " if sign else "") + cardinal(number)


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
    "ampm": lambda h, ap: f"{cardinal(h)} {ap.lower()} m",
    "phone": _phone,
    "money": _money,
    "percent": lambda n: f"{cardinal(n)} percent",
    "ordinal": lambda n, _suffix: _ordinal(n),
    "version": lambda v: " point ".join(cardinal(p) for p in v.split(".")),
    "range": _range,
    "scientific": _scientific,
    "unit": _unit,
    "year": lambda word, y: f"{word} {_year(y)}",
    "hash": lambda n: f"number {cardinal(n)}",
    "number": _signed,
}
