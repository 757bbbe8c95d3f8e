"""Settings that are lists, set as one comma-separated value."""

from __future__ import annotations


def csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
