"""Spoken-language detection on the embedded voices (issue 22): 20 English and 10 Japanese
sentences (statements, questions, numbers), each spoken by one of the five embedded Japanese
voices through the gateway's TTS, transcribed with no `language` by gateways with different
language settings, and by the raw library (`WhisperModel.transcribe(vad_filter=True)`, whose
detection is Whisper's own). Scored: the language chosen, English WER, Japanese CER.

Run alone: `python -m benchmarks.languages [--out FILE.json]` (prints the Markdown section).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.config import Settings

from . import clips
from .accuracy import error_rate, wer
from .client import AUTH
from .server import GatewayProcess

VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
ENGLISH = (
    "Our new library opens at nine and closes at six on most weekdays.",
    "What time does the last train to the airport leave tonight?",
    "I bought 12 eggs, 3 apples and a loaf of bread.",
    "Please remember to bring the quarterly report to the meeting on Thursday.",
    "Could you turn off the lights in the living room?",
    "The meeting has been moved to 4:30 in the afternoon.",
    "She poured a cup of tea and read the letter twice before answering.",
    "How many people live in this city?",
    "The temperature will drop to 5 degrees overnight.",
    "Children in the park were flying bright red kites in the breeze.",
    "Is the pharmacy on the corner still open?",
    "Engineers replaced the old bridge with a lighter design made of steel.",
    "My phone number ends in 4 7 2 9.",
    "Set a timer for 20 minutes, please.",
    "The museum will show paintings from the early twentieth century.",
    "Why did the package arrive two days late?",
    "After dinner we walked along the harbor and watched the boats come in.",
    "The recipe needs 250 grams of flour and two cups of milk.",
    "Do you know where I left my keys?",
    "The committee agreed to postpone the vote until the budget is final.",
)
JAPANESE = (
    "今日はとても良い天気ですね。",
    "駅までどうやって行けばいいですか？",
    "会議は午後三時に始まります。",
    "この本はとても面白かったです。",
    "明日の朝、早く起きなければなりません。",
    "すみません、トイレはどこですか？",
    "私は毎日電車で会社に通っています。",
    "週末は家族と一緒に山に登りました。",
    "この料理はとても美味しいです。",
    "電気を消してもらえますか？",
)
# label, GATEWAY_* settings of its gateway
NO_DEFAULT = {"GATEWAY_WHISPER__LANGUAGE": ""}
CONFIGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("shipped defaults (`language=en` below p 0.97)", {}),
    ("candidates `en,ja`, no default", {**NO_DEFAULT, "GATEWAY_WHISPER__LANGUAGES": "en,ja"}),
    ("candidates `en,ja` + default `en`", {"GATEWAY_WHISPER__LANGUAGES": "en,ja"}),
    ("no settings (Whisper's guess)", NO_DEFAULT),
    ("one candidate `en` (pinned)", {"GATEWAY_WHISPER__LANGUAGES": "en"}),
)


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate over letters and digits (Japanese has no spaces to count words)."""
    return error_rate([c for c in reference if c.isalnum()], [c for c in hypothesis if c.isalnum()])


def corpus(quick: bool = False) -> list[tuple[str, str, str]]:
    """(language, text, voice) of every clip: the voices in turn (quick: a few of each)."""
    english, japanese = (ENGLISH[:4], JAPANESE[:2]) if quick else (ENGLISH, JAPANESE)
    items = [("en", t) for t in english] + [("ja", t) for t in japanese]
    return [(lang, text, VOICES[i % len(VOICES)]) for i, (lang, text) in enumerate(items)]


def _score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def share(lang: str | None) -> float:
        mine = [r for r in rows if lang is None or r["expected"] == lang]
        return sum(r["language"] == r["expected"] for r in mine) / max(len(mine), 1)

    def mean(key: str, lang: str) -> float:
        mine = [r[key] for r in rows if r["expected"] == lang]
        return sum(mine) / max(len(mine), 1)

    return {
        "right": share(None),
        "right_en": share("en"),
        "right_ja": share("ja"),
        "wer_en": mean("error", "en"),
        "cer_ja": mean("error", "ja"),
        "clips": rows,
    }


def _row(lang: str, text: str, heard: str, said: str, p: float | None) -> dict[str, Any]:
    error = wer(text, said) if lang == "en" else cer(text, said)
    return {"expected": lang, "language": heard, "p": p, "error": error, "text": said}


def run(say: Any, logs: Path, quick: bool = False) -> dict[str, Any]:
    """Detection and error rates of each configuration (quick: the first two) and of the raw
    library."""
    from faster_whisper import WhisperModel

    from gateway.text.languages import LANGUAGE_NAMES

    codes = {name: code for code, name in LANGUAGE_NAMES.items()}
    items = corpus(quick)
    audio: list[bytes] = []
    results: dict[str, Any] = {}
    for label, env in CONFIGS[:2] if quick else CONFIGS:
        rows = []
        with (
            GatewayProcess(env, "languages", logs, quiet=True) as gw,
            httpx.Client(timeout=600) as client,
        ):
            if not audio:  # spoken once, by the first gateway, as WAV
                for _, text, voice in items:
                    samples, rate = clips.speak(gw.base_url, text, voice)
                    audio.append(clips.encode(samples, rate, "wav"))
            for (lang, text, _), wav in zip(items, audio, strict=True):
                r = client.post(
                    f"{gw.base_url}/v1/audio/transcriptions",
                    files={"file": ("clip.wav", wav)},
                    data={"model": "whisper-1", "response_format": "verbose_json"},
                    headers=AUTH,
                )
                r.raise_for_status()
                body = r.json()
                heard = codes.get(body["language"], body["language"])
                rows.append(_row(lang, text, heard, body["text"], body.get("language_probability")))
        results[label] = _score(rows)
        say(f"languages: {label}: {100 * results[label]['right']:.0f} % right")
    w = Settings().whisper
    model = WhisperModel(
        str(Settings().models.dir / "whisper-base"), device="cpu", compute_type=w.compute_type
    )
    rows = []
    for (lang, text, _), wav in zip(items, audio, strict=True):
        segments, info = model.transcribe(io.BytesIO(wav), beam_size=5, vad_filter=True)
        said = " ".join(s.text.strip() for s in segments)
        rows.append(_row(lang, text, info.language, said, info.language_probability))
    results["raw faster-whisper (no language)"] = _score(rows)
    count = {lang: sum(item[0] == lang for item in items) for lang in ("en", "ja")}
    return {"english": count["en"], "japanese": count["ja"], "configs": results}


def render(res: dict[str, Any]) -> list[str]:
    lang = res.get("languages")
    if not lang:
        return []
    out = [
        "## 8. Spoken-language detection on the embedded voices",
        "",
        f"{lang['english']} English and {lang['japanese']} Japanese sentences, each spoken by "
        "one of the five embedded Japanese voices (in turn), uploaded as WAV with no "
        "`language` (`model=whisper-1`, Whisper base int8 on the CPU). Right: the transcript's "
        "language is the one spoken. English scored by WER (digits not spelled out), Japanese "
        "by CER over letters. Goal: ≥ 95 % right with a candidate set of the languages present.",
        "",
        "| gateway settings | right | English right | Japanese right | English WER | "
        "Japanese CER |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in lang["configs"].items():
        out.append(
            f"| {label} | {100 * s['right']:.0f} % | {100 * s['right_en']:.0f} % "
            f"| {100 * s['right_ja']:.0f} % | {100 * s['wer_en']:.1f} % "
            f"| {100 * s['cer_ja']:.1f} % |"
        )
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=None, help="raw results as JSON")
    args = p.parse_args(argv)
    logs = Path(clips.cache_dir()) / "logs"
    res = {"languages": run(lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True), logs)}
    if args.out:
        args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    print("\n".join(render(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
