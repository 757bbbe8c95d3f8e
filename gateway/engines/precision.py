"""Which precision a GPU lane runs a model in, from the setting and the card.

fp16 pays where the card has tensor cores for it: compute capability 7.0 and up (V100, T4, A2,
A10, L4, A100, H100...). Older cards (Pascal: P4, P40) run fp16 at a fraction of their fp32 rate
or no faster, so `auto` keeps them on the float model.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["fp16", "fp32"]
FAST_FP16 = (7, 0)


def gpu_precision(setting: str, capability: tuple[int, int] | None) -> Precision:
    """`fp16` or `fp32` as set; `auto`: fp16 on a card with fast fp16, else fp32 (also when the
    card is unknown: the float model runs on any card)."""
    if setting == "fp16":
        return "fp16"
    if setting == "fp32":
        return "fp32"
    return "fp16" if capability is not None and capability >= FAST_FP16 else "fp32"
