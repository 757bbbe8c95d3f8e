"""Derive a timed Kokoro model: the same graph with the predicted phoneme durations as a second
output named `duration`, the output kokoro-onnx reads phoneme timings from.

Kokoro predicts how many frames each input token lasts before it renders any audio:

    Sigmoid -> ReduceSum -> Div(speed) -> Round -> Clip(min 1) -> Cast(int64) -> ... expansion

The Cast's output ([1, tokens]: integer frames per token, the two pad tokens included) feeds the
repeat of the text features into frames, so the audio has exactly sum(duration) frames (600
samples at 24 kHz each). The derivation only renames that tensor to `duration` (in its producer,
its consumers and its shape annotation) and lists it among the graph's outputs. No node is added,
removed or changed, so the audio is the same computation, and no integer op is added; ONNX
Runtime merely keeps a tensor it already computes. Written deterministically (pinned by sha256).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from .dequantize import write_model

DURATION = "duration"


class TimedModelError(ValueError):
    """The graph has no (or more than one) duration predictor pattern this rewrite knows."""


def has_durations(model: onnx.ModelProto) -> bool:
    return any(o.name == DURATION for o in model.graph.output)


def _durations_tensor(graph: onnx.GraphProto) -> str:
    """The int64 per-token frame counts: Round -> Clip -> Cast(to int64)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, op: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    found = []
    for node in graph.node:
        if node.op_type != "Round":
            continue
        clip = only(node.output[0], "Clip")
        cast = only(clip.output[0], "Cast") if clip is not None else None
        if cast is None:
            continue
        to = next((a.i for a in cast.attribute if a.name == "to"), None)
        if to == TensorProto.INT64:
            found.append(cast.output[0])
    if len(found) != 1:
        raise TimedModelError(
            f"expected one Round -> Clip -> Cast(int64) duration pattern, found {len(found)}"
        )
    return found[0]


def add_duration_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with the durations as output `duration` (see the module docstring); a
    model that already has that output is returned as it is (copied)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if has_durations(out):
        return out
    graph = out.graph
    if any(DURATION in node.output for node in graph.node):
        raise TimedModelError(f"a tensor is already named {DURATION!r}")
    old = _durations_tensor(graph)
    for node in graph.node:
        node.output[:] = [DURATION if o == old else o for o in node.output]
        node.input[:] = [DURATION if i == old else i for i in node.input]
    for info in graph.value_info:
        if info.name == old:
            info.name = DURATION
    tokens = graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value or d.dim_param for d in tokens] or None
    graph.output.append(helper.make_tensor_value_info(DURATION, TensorProto.INT64, shape))
    return out


def timed_file(src: Path, dest: Path) -> str:
    """Write the timed model of `src` to `dest` atomically and deterministically; returns its
    sha256."""
    return write_model(add_duration_output(onnx.load(str(src))), dest)
