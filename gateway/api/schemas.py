"""OpenAI response bodies of the transcription endpoints, typed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Logprob(BaseModel):
    """One text token's log probability (`include[]=logprobs`)."""

    token: str
    logprob: float
    bytes: list[int]


class UsageDuration(BaseModel):
    """`usage` of a Whisper-named model (`whisper-1`): the audio's length, as OpenAI bills it."""

    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """`response_format=json`."""

    text: str
    logprobs: list[Logprob] | None = None
    usage: UsageDuration | None = None


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
    usage: UsageDuration | None = None
