"""Text normalization: exact outputs of the normalizer, then a corpus of chat replies spoken by the
real Kokoro engine and heard back by real Whisper."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.text.normalize import SpokenTooLong, normalize_text
from gateway.text.text import split_sentences

from ..conftest import wer
from ..support.roundtrip import speak, transcribe

CASES = [
    ("# Title\n\nSome **bold** and *italic* text.", "Title. Some bold and italic text."),
    ("- one\n- two", "one. two."),
    ("```python\nprint('x')\n```\nAfter.", "Code block. After."),
    ("Run `pip_install --user`.", "Run pip install user."),
    ("![a cat](cat.png) Cute.", "image: a cat, Cute."),
    ("See [the guide](https://example.com/x) now.", "See the guide now."),
    ("Go to https://www.github.com/a/b?q=1 now.", "Go to github dot com now."),
    ("Mail ann.lee@example.org today.", "Mail ann dot lee at example dot org today."),
    ("| A | B |\n|---|---|\n| 1 | 2 |", "A, B. one, two."),
    ("Great job! 🎉👍", "Great job!"),
    ("👍🎉", ""),
    ("It costs $1,234.56.", "It costs one thousand two hundred thirty-four dollars and fifty-six cents."),
    ("Only $1 or £3.50 or $2.5M.", "Only one dollar or three pounds and fifty pence or two point five million dollars."),
    ("Up 12.5% in 2023.", "Up twelve point five percent in twenty twenty-three."),
    ("On 2024-03-15 or 12/24/2024.", "On March fifteenth, twenty twenty-four or December twenty-fourth, twenty twenty-four."),
    ("By March 5th, 2025.", "By March fifth, twenty twenty-five."),
    ("At 3:30 PM or 14:00 or 9am.", "At three thirty p m or fourteen hundred or nine a m."),
    ("At 10:05 sharp.", "At ten oh five sharp."),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    ("Run 5 km at 20°C with 16 GB.", "Run five kilometers at twenty degrees Celsius with sixteen gigabytes."),
    ("1 kg, 120 km/h, -5°C.", "one kilogram, one hundred twenty kilometers per hour, minus five degrees Celsius."),
    ("The 1st and 22nd.", "The first and twenty-second."),
    ("Pages 10-20, item #3, A & B.", "Pages ten to twenty, item number three, A and B."),
    ("Version 3.12.1 is out.", "Version three point twelve point one is out."),
    ("Apples, pears, etc. Then more.", "Apples, pears, et cetera. Then more."),
    ("Bold **without an end", "Bold without an end."),
    ("Pi is 3.14159.", "Pi is three point one four one five nine."),
    ("About 6.02e23 or 1E-9.", "About six point zero two times ten to the power of twenty-three or one times ten to the power of minus nine."),
    ("Order 1234567890123456.", "Order one two three four five six seven eight nine zero one two three four five six."),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalizer_output(text: str, spoken: str) -> None:
    assert normalize_text(text, "en-us") == spoken


def test_other_languages_keep_their_numbers_but_lose_markdown() -> None:
    assert normalize_text("**Hola**, tengo 3 gatos. 🐱", "es") == "Hola, tengo 3 gatos."
    assert normalize_text("# 見出し\n\n**今日は**3月15日です。", "ja") == "見出し. 今日は3月15日です。"


def test_sentences_are_never_merged_or_dropped() -> None:
    """Per sentence: the normalized text has as many sentences, each the sentence alone."""
    text = ("It costs $5. The meeting is at 3:30 PM. Send it to a@b.com! Is 12.5% right? "
            "Yes, etc. Done in 2024.")  # fmt: skip
    sentences = split_sentences(text)
    whole = split_sentences(normalize_text(text, "en-us"))
    assert len(whole) == len(sentences) == 6
    assert whole == [normalize_text(s, "en-us") for s in sentences]


# -- bounds: no text makes the normalizer raise, or read much longer than it is written ----------


@pytest.mark.parametrize("text", ["9" * 400, "$" + "9" * 400, "9" * 400 + "%", "-" + "9" * 400,
                                  "#" + "9" * 400, "9" * 400 + "th", "9" * 400 + " km",
                                  "9" * 400 + ".5", "0." + "9" * 400, "1e" + "9" * 400,
                                  "1.2." + "9" * 400])  # fmt: skip
def test_a_number_too_long_for_words_is_read_digit_by_digit(text: str) -> None:
    """num2words overflows past 306 digits (a 500 before); such a number is read one digit at a
    time, every digit said."""
    spoken = normalize_text(text, "en-us")
    assert spoken.count("nine") >= 400, spoken[:200]
    assert "illion" not in spoken and len(spoken) <= 6 * len(text) + 60, spoken[:200]


NUMBERISH = st.lists(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=400),
        st.sampled_from([",", ".", "-", "+", "e", "E", "$", "€", "£", "¥", "%", "#", ":", "/", " ",
                         "st", "th", "km", "°C", "x", " M", "bn", " billion", " PM", "in ",
                         "January ", "(", ")", "±", "\n", "v", "e-", "e+"]),
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NUMBERISH)
def test_number_like_text_never_raises_and_stays_bounded(text: str) -> None:
    """Anything made of digits, separators, currency, units and exponents reads as at most
    about fifteen characters for each written one (`±` is the longest: "plus or minus"), and a
    bound given to the normalizer is kept or refused, never passed."""
    spoken = normalize_text(text, "en-us")
    assert len(spoken) <= 15 * len(text) + 16, (text, spoken)
    try:
        bounded = normalize_text(text, "en-us", limit=len(text))
    except SpokenTooLong:
        assert len(spoken) > len(text)
    else:
        assert bounded == spoken and len(bounded) <= len(text)


def test_the_spoken_bound_refuses_early() -> None:
    """4096 digits read one by one are 20,475 characters: past a bound of 4 x 4096 the
    normalizer stops with SpokenTooLong; `$1,000,000,000` repeated to 4096 characters passes."""
    with pytest.raises(SpokenTooLong):
        normalize_text("9" * 4096, "en-us", limit=4 * 4096)
    billions = ("$1,000,000,000 " * 300)[:4096]
    assert len(normalize_text(billions, "en-us", limit=4 * 4096)) < 2 * 4096


CORPUS = Path(__file__).parents[1] / "data" / "chat_replies.md"
SYMBOL_NAMES = {"asterisk", "asterisks", "hash", "hashtag", "slash", "slashes", "backslash",
                "backtick", "backticks", "underscore", "pipe", "pipes", "bracket", "brackets",
                "tilde", "caret", "ampersand", "colon", "semicolon", "http", "https", "www",
                "emoji", "greater", "bullet"}  # fmt: skip
NUMBER_WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty",
                "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion",
                "first", "second", "third", "fifth", "twenty-second", "twenty-fourth"}  # fmt: skip


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


# What a person reading each reply of the corpus aloud says, written by hand, in corpus order.
CHAT_SPOKEN = [
    "Sure! Here is a quick summary of the plan.",
    "Getting started. Install the package, then restart your editor.",
    "The total comes to one thousand two hundred thirty-four dollars and fifty-six cents, including tax.",
    "Sales grew by twelve point five percent in twenty twenty-three, up from eight percent the year before.",
    "Your appointment is on March fifth, twenty twenty-five at three thirty p m.",
    "You can reach support at five five five, one two three, four five six seven during business hours.",
    "Check the docs at docs dot python dot org for details.",
    "Send the report to jane dot doe at example dot com before Friday.",
    "Great question! The answer is yes, with one caveat.",
    "Preheat the oven to two hundred degrees Celsius. Bake for twenty-five minutes. Let it cool.",
    "Open the settings. Click Save. Reload the page.",
    "Name, Score. Alice, ninety-two. Bob, eighty-five.",
    "Here is an example: Code block. That prints a greeting.",
    "Use git status to see which files changed.",
    "The release is scheduled for July first, twenty twenty-four.",
    "A marathon is about forty-two kilometers, or roughly twenty-six miles.",
    "The laptop has sixteen gigabytes of memory and a three point two gigahertz processor.",
    "It weighs two point five kilograms and costs four hundred ninety-nine euros.",
    "She finished in first place, and he came twenty-second.",
    "The meeting moved from nine a m to eleven a m.",
    "Note: this feature is still in beta. Use it with care.",
    "See the official guide for setup steps.",
    "Old price The new price is nineteen dollars and ninety-nine cents per month.",
    "The population is about eight billion people.",
    "Temperatures will range from fifteen to twenty degrees tomorrow.",
    "That's a three times speedup over the old version!",
    "Summary. The project took eighteen months and cost two point five million dollars.",
    "Python three point one two added better error messages.",
    "Call us at plus one, four one five, five five five, zero one zero zero if anything breaks.",
    "The train leaves at fourteen forty-five and arrives at eighteen ten.",
    "Drink about two liters of water per day.",
    "I found three issues: a typo, a broken link, and a missing image.",
    "The store opens at ten o'clock on weekdays.",
    "Round the answer to zero point seven five and you are done.",
    "Your order number four thousand five hundred twenty-one has shipped.",
    "The file is two hundred fifty megabytes, so the upload may take five minutes.",
    "Rates rose zero point two five percent in June, the third rise this year.",
    "Visit wikipedia dot org and search for the history of Rome.",
    "Thanks for asking! Let me know if you need anything else.",
    "Important: back up your data before upgrading.",
    "Her flight lands on December twenty-fourth, twenty twenty-four at six fifteen a m.",
    "The car reached one hundred twenty kilometers per hour in under ten seconds.",
]  # fmt: skip
# Replies with something the normalizer must turn into words of its own (numbers, units, money,
# dates, times, addresses); the rest only lose markup and emoji, and their exact spoken text
# (checked below) is plain words a voice cannot read as symbols.
GENERATED = re.compile(r"[0-9@$€£%°+]|#\d|https?://|www\.")
PLAIN = re.compile(r"[A-Za-z' ,.!?:-]+")


def _replies() -> list[str]:
    replies = CORPUS.read_text().split("\n===\n")
    assert len(replies) == len(CHAT_SPOKEN) >= 40
    return replies


def test_chat_replies_normalize_to_what_a_person_says() -> None:
    for reply, spoken in zip(_replies(), CHAT_SPOKEN, strict=True):
        assert normalize_text(reply, "en-us") == spoken, reply
        assert not SYMBOL_NAMES & set(_words(spoken)), spoken
        if not GENERATED.search(reply):
            assert PLAIN.fullmatch(spoken), spoken


@pytest.mark.slow
def test_chat_replies_are_read_as_a_person_would() -> None:
    """Each reply whose spoken form the normalizer makes up, through the real engine, heard by
    Whisper, against what a person says (written by hand above): no symbol names, the words in
    order, numbers as words. Whisper writes numbers as digits (`$5`, `3:30 p.m.`), so its
    transcript is read by the normalizer before the comparison."""
    started = time.monotonic()
    errors, report, numbers_said, numbers_heard, total_words = 0.0, [], 0, 0, 0
    for reply, reference in zip(_replies(), CHAT_SPOKEN, strict=True):
        if not GENERATED.search(reply):
            continue
        heard = transcribe(speak(reply), "whisper-tiny.en", "en")
        spoken = normalize_text(heard, "en-us")
        assert not SYMBOL_NAMES & set(_words(heard)), (reply, heard)
        words = len(_words(reference))
        rate = wer(reference, spoken)
        errors += rate * words
        total_words += words
        report.append(f"{rate:.2f} {reference!r} -> {heard!r}")
        said = [w for w in _words(reference) if w in NUMBER_WORDS]
        numbers_said += len(said)
        numbers_heard += sum(1 for w in said if w in _words(spoken))
    corpus_wer = errors / total_words
    took = time.monotonic() - started
    print(f"\n{len(report)} replies, corpus WER {corpus_wer:.3f}, numbers heard "
          f"{numbers_heard}/{numbers_said}, {took:.0f} s\n" + "\n".join(report))  # fmt: skip
    assert len(report) >= 25
    # Whisper (tiny) mishears a plain word now and then ("summary" as "summer"): the bound is
    # on the corpus, each reply's exact spoken text being checked above
    assert corpus_wer <= 0.15, "\n".join(report)
    assert numbers_heard >= 0.9 * numbers_said, "\n".join(report)
