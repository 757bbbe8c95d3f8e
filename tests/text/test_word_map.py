"""The map from a plan's phonemes back to the written words (text/words.py), checked against
phonemes known word by word: each English word phonemized alone by the same espeak, Japanese words
as written out below. No model runs here (tests/engines/test_word_timings.py times real speech)."""

from __future__ import annotations

import pytest
from kokoro_onnx.tokenizer import Tokenizer

from gateway.audio.subtitles import to_vtt, word_cues
from gateway.engines import kokoro_text
from gateway.text import japanese
from gateway.text.words import WordMap, written_words

_STRESS = "ˈˌ"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def _letters(phonemes: str) -> str:
    return "".join(ch for ch in phonemes if ch.isalpha() and ch not in _STRESS)


def _mapped(tok: Tokenizer, text: str, lang: str = "en-us") -> WordMap:
    phonemes, words = kokoro_text.phonemize(
        tok, text, lang, normalize=True, max_spoken_chars=None, words=True
    )
    plain, none = kokoro_text.phonemize(
        tok, text, lang, normalize=True, max_spoken_chars=None, words=False
    )
    assert phonemes == plain and none is None  # asking for words never changes the speech
    assert words is not None and words.phonemes == phonemes
    return words


# (text, each written word with the words it is spoken as)
KNOWN = [
    ("The quick brown fox jumps over the lazy dog.",
     [("The", "the"), ("quick", "quick"), ("brown", "brown"), ("fox", "fox"), ("jumps", "jumps"),
      ("over", "over"), ("the", "the"), ("lazy", "lazy"), ("dog.", "dog")]),
    # numbers: the written word with its spoken form
    ("It costs $5 and weighs 12 kg.",
     [("It", "it"), ("costs", "costs"), ("$5", "five dollars"), ("and", "and"),
      ("weighs", "weighs"), ("12", "twelve"), ("kg.", "kilograms")]),
    # Markdown: markup is no word, link targets are not read
    ("## Notes\n\nRead **this** and [the guide](https://example.com/guide) now.",
     [("Notes", "notes"), ("Read", "read"), ("this", "this"), ("and", "and"), ("the", "the"),
      ("guide", "guide"), ("now.", "now")]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), KNOWN, ids=[t[:24] for t, _ in KNOWN])
def test_each_written_word_gets_the_phonemes_it_has_alone(
    tok: Tokenizer, text: str, expected: list[tuple[str, str]]
) -> None:
    found = _mapped(tok, text)
    assert found.words == [w for w, _ in expected]
    spans = [found.phonemes[a:b] for a, b in found.spans]
    for (word, spoken), span in zip(expected, spans, strict=True):
        alone = kokoro_text.phonemize_each(tok, spoken.split(), "en-us")
        assert _letters(span) == _letters("".join(alone)), (word, span, alone)
    ends = [b for _, b in found.spans]
    starts = [a for a, _ in found.spans]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))  # in order, apart


def test_words_espeak_joins_are_split_where_their_phonemes_meet(tok: Tokenizer) -> None:
    """espeak writes `in the` as one phoneme word `ɪnðə` (and `of` in context as `əv`, alone
    `ʌv`): the map splits it where the words' own phonemes meet."""
    found = _mapped(tok, "Most of the time, we walk in the park.")
    pairs = [(w, found.phonemes[a:b]) for w, (a, b) in zip(found.words, found.spans, strict=True)]
    assert " ɪnðə " in found.phonemes
    assert pairs[1:3] == [("of", "əv"), ("the", "ðə")]
    assert pairs[6:8] == [("in", "ɪn"), ("the", "ðə")]


# Kokoro's Japanese phonemes read back as Hepburn romaji, loosely: enough to tell one reading
# from another (は read "wa" as a particle, not "ha"), not a copy of the G2P's exact symbols.
_ROMAJI = [("ʲi", "i"), ("kʲ", "ky"), ("ɡʲ", "gy"), ("ɕ", "sh"), ("ʨ", "ch"), ("ʥ", "j"), ("ʦ", "ts"),
           ("β", "w"), ("ɾ", "r"), ("ɨ", "u"), ("ɯ", "u"), ("ɡ", "g"), ("ɸ", "f"), ("ç", "h"),
           ("ɲ", "ny"), ("ŋ", "n"), ("ɴ", "n")]  # fmt: skip


def _romaji(phonemes: str) -> str:
    for ipa, latin in _ROMAJI:
        phonemes = phonemes.replace(ipa, latin)
    out = ""
    for ch in phonemes:  # a long mark doubles its vowel, as kyō is written kyoo
        out += out[-1:] if ch == "ː" else ch if ch.isalpha() else ""
    return out


def test_japanese_words_are_the_g2p_words_with_their_own_phonemes(tok: Tokenizer) -> None:
    """The sentence's words as a reader segments it, each with its own reading (written here as
    romaji), the English word inside it read by English espeak as it reads the word alone, and
    no phoneme outside a word but spaces and marks."""
    found = _mapped(tok, "今日は晴れです。Pythonで書きました！", "ja")
    assert found.words == ["今日", "は", "晴れ", "です。", "Python", "で", "書き", "ました!"]
    spans = [found.phonemes[a:b] for a, b in found.spans]
    readings = {"今日": "kyoo", "は": "wa", "晴れ": "hare", "です。": "desu", "で": "de",
                "書き": "kaki", "ました!": "mashita"}  # fmt: skip
    for word, span in zip(found.words, spans, strict=True):
        if word == "Python":
            alone = kokoro_text.phonemize_each(tok, [word], "en-us")
            assert _letters(span) == _letters("".join(alone)), (span, alone)
        else:
            assert _romaji(span) == readings[word], (word, span)
    ends = [b for _, b in found.spans]
    starts = [a for a, _ in found.spans]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))  # in order, apart
    outside = "".join(found.phonemes[b:a] for b, a in zip([0, *ends], [*starts, None], strict=True))
    assert not any(ch.isalpha() for ch in outside), outside


def test_japanese_numbers_are_words_of_their_own(tok: Tokenizer) -> None:
    found = _mapped(tok, "会議は3月5日です。", "ja")
    assert found.words[:3] == ["会議", "は", "3月"]
    assert found.phonemes[slice(*found.spans[2])] == "saŋɡaʦɨ"


# A corpus: every written word of it is found in the phonemes, once, in order.
ENGLISH = [
    "The meeting starts at nine sharp.",
    "Please bring the blue folder and two pens.",
    "Our train leaves from platform 4 at 10:15 am.",
    "She paid $23.50 for the tickets, which was fair.",
    "Turn left at the second light, then keep going straight.",
    "The results improved by 12% over last year.",
    "Is it going to rain on Saturday?",
    "I can't believe how quickly the summer went by!",
    "The recipe needs 3 eggs, 2 cups of flour and a pinch of salt.",
    "Dr. Smith will see you in a few minutes.",
    "Read the **first** chapter before class.",
    "Visit [our site](https://example.org) for details.",
    "We moved here in 1998, and never looked back.",
    "The package weighs 5 kg and ships tomorrow.",
    "Call me at 555-123-4567 after lunch.",
    "The kids built a castle out of sand and shells.",
    "It was the 3rd time this week that the printer jammed.",
    "Could you turn the music down a little, please?",
    "The museum is open from Tuesday to Sunday.",
    "Honestly, that was the best soup I have ever had.",
    "The river rose two meters overnight, e.g. near the old bridge.",
]
JAPANESE = [
    "今日はとても良い天気です。",
    "駅まで歩いて十分かかります。",
    "明日の会議は午後三時からです。",
    "この本はとても面白かったです。",
    "私は毎朝コーヒーを飲みます。",
    "窓を開けてもいいですか？",
    "電車が遅れているようです。",
    "週末に友達と映画を見ました。",
    "新しいパソコンを買いたいです。",
    "ありがとうございました。",
    "東京は人が多いですね。",
]


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def test_english_corpus_every_written_word_is_mapped(tok: Tokenizer) -> None:
    for sentence in ENGLISH:
        found = _mapped(tok, sentence)
        assert _key("".join(found.words)) == _key("".join(written_words(sentence))), sentence
        assert all(a < b for a, b in found.spans), sentence


def test_japanese_corpus_every_word_is_mapped(tok: Tokenizer) -> None:
    for sentence in JAPANESE:
        found = _mapped(tok, sentence, "ja")
        assert _key("".join(found.words)) == _key(sentence), sentence
        assert found.words[-1][-1] in "。?", sentence  # a word ends with its sentence's mark
        assert all(a < b for a, b in found.spans), sentence
        assert japanese.phonemize_words(sentence, lambda s: (s, []))[0] == japanese.phonemize(
            sentence, lambda s: s
        )


def test_a_unit_cut_keeps_each_word_in_its_unit(tok: Tokenizer) -> None:
    found = _mapped(tok, "One two three. Four five six.")
    cut = found.phonemes.index(". ") + 1
    units = [found.phonemes[:cut], found.phonemes[cut + 1 :]]
    pieces = found.unit_pieces(units)
    assert [[w for w, _, _ in p] for p in pieces] == [[0, 1, 2], [3, 4, 5]]
    w, a, b = pieces[1][0]
    assert units[1][a:b] == found.phonemes[slice(*found.spans[w])]


def test_captions_break_after_sentences_and_long_lines() -> None:
    text = "Hello there. This line goes on for quite a while before it ends."
    words = [{"word": w, "start": i, "end": i + 0.5} for i, w in enumerate(text.split(" "))]
    cues = word_cues(words)
    assert [c["text"] for c in cues] == [
        "Hello there.",
        "This line goes on for quite a while before",
        "it ends.",
    ]
    assert cues[1]["start"] == 2 and cues[1]["end"] == 10.5
    assert "00:00:02.000 --> 00:00:10.500\nThis line" in to_vtt(cues)
