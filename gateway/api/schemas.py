"""OpenAI response bodies of the transcription endpoints, typed."""

from __future__ import annotations

from pydantic import BaseModel


class Transcription(BaseModel):
    """`response_format=json`."""

    text: str


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float
    probability: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(BaseModel):
    """`response_format=verbose_json`; `segments` and `words` as the granularities ask."""

    task: str
    language: str
    # the gateway's: how sure it was of the language it chose (absent where the request named it)
    language_probability: float | None = None
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
