"""PNG plots of the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .sharing import TARGET_RATIO  # noqa: E402

BLUE, ORANGE, GREEN, GREY, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label_bars(ax: Any, bars: Any, fmt: str = "{:.2f}") -> None:
    for bar in bars:
        h = bar.get_height()
        if h == h:  # not NaN
            ax.annotate(
                fmt.format(h),
                (bar.get_x() + bar.get_width() / 2, h),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )


def sharing(results: dict[str, Any], path: Path, target: float = TARGET_RATIO) -> Path:
    cfg = results["configs"]
    names = list(cfg)
    x = range(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    w = 0.2
    series = [
        ("idle p50", "idle", "p50", "#9ecae1"),
        ("idle p95", "idle", "p95", BLUE),
        ("loaded p50", "load", "p50", "#fdae6b"),
        ("loaded p95", "load", "p95", ORANGE),
    ]
    for i, (label, phase, q, color) in enumerate(series):
        vals = [cfg[n][phase][q] for n in names]
        bars = ax1.bar([k + (i - 1.5) * w for k in x], vals, w, label=label, color=color)
        _label_bars(ax1, bars, "{:.1f}")
    ax1.set_xticks(list(x), names)
    ax1.set_ylabel("seconds (one sentence, end to end)")
    ax1.set_title("Interactive sentence latency: idle vs two batch loops")
    ax1.legend(fontsize=8)
    ratios = [cfg[n]["ratio_p95"] for n in names]
    colors = [GREEN if r <= target else RED for r in ratios]
    bars = ax2.bar(list(x), ratios, 0.5, color=colors)
    _label_bars(ax2, bars, "{:.2f}×")
    ax2.axhline(target, color=GREY, ls="--", lw=1)
    ax2.annotate(
        f"target ≤ {target:g}×",
        (len(names) - 0.5, target),
        ha="right",
        va="bottom",
        fontsize=8,
        color=GREY,
    )
    ax2.set_xticks(list(x), names)
    ax2.set_ylabel("p95 under load / idle p95")
    ax2.set_title("Slow-down of the sentence under batch load (lower is better)")
    return _save(fig, path)


def overhead(data: dict[str, Any], path: Path) -> Path:
    cases = data["cases"]
    labels = [c["case"] for c in cases]
    y = range(len(cases))
    fig, ax = plt.subplots(figsize=(9, 1.3 + 0.75 * len(cases)))
    h = 0.38
    ax.barh(
        [k + h / 2 for k in y], [c["raw_median"] for c in cases], h, label="raw library", color=GREY
    )
    bars = ax.barh(
        [k - h / 2 for k in y],
        [c["gateway_median"] for c in cases],
        h,
        label="gateway (HTTP, end to end)",
        color=BLUE,
    )
    for bar, c in zip(bars, cases, strict=True):
        cpu = c.get("cpu_ratio")
        text = f"wall {c['ratio']:.2f}×" + (f", CPU {cpu:.2f}×" if cpu == cpu and cpu else "")
        ax.annotate(
            text,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds, median")
    ax.margins(x=0.3)
    ax.set_title("Gateway overhead against the raw library call (target ≤ 1.05×)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    return _save(fig, path)


def throughput(data: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for engine, color in (("speech", BLUE), ("transcription", ORANGE)):
        rows = data[engine]
        xs = [r["clients"] for r in rows]
        axes[0].plot(xs, [r["rps"] for r in rows], "o-", color=color, label=engine)
        axes[1].plot(xs, [r["rtf"] for r in rows], "o-", color=color, label=engine)
        axes[2].plot(xs, [r["latency"]["p95"] for r in rows], "o-", color=color, label=engine)
    titles = (
        "Requests per second",
        "Real-time factor (wall s per audio s, lower is better)",
        "p95 latency per request (s)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def memory(rows: list[tuple[str, float]], path: Path, target_mib: float = 1024.0) -> Path:
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.6 * len(rows)))
    labels = [r[0] for r in rows]
    vals = [r[1] / 1024.0 for r in rows]
    bars = ax.barh(
        range(len(rows)),
        vals,
        0.55,
        color=[GREEN if v * 1024 <= target_mib else ORANGE for v in vals],
    )
    for bar, v in zip(bars, vals, strict=True):
        ax.annotate(
            f"{v:.2f} GiB",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            va="center",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.axvline(target_mib / 1024.0, color=GREY, ls="--", lw=1)
    ax.set_xlim(0, max([*vals, target_mib / 1024.0]) * 1.2)
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("GiB (peak resident set, VmHWM; idle rows: VmRSS)")
    ax.set_title("Memory with both models loaded (target ≤ 1.0 GiB)")
    return _save(fig, path)


def streaming(data: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels = [
        "first audio byte\n(stream: true)",
        "last byte\n(stream: true)",
        "whole response\n(no stream)",
    ]
    vals = [data["ttfb"]["p50"], data["stream_total"]["p50"], data["full"]["p50"]]
    bars = ax.bar(labels, vals, 0.5, color=[GREEN, BLUE, GREY])
    _label_bars(ax, bars, "{:.2f} s")
    ax.set_ylabel("seconds, median")
    ax.margins(y=0.15)
    ax.set_title("Streaming a multi-sentence reply: when the first audio arrives")
    return _save(fig, path)
