"""Derive a half-precision (fp16) Kokoro model for the GPU lane from the float (timed) one.

Cards with tensor cores do fp16 math several times faster than fp32 (an NVIDIA A2: 18 TFLOPS
against 4.5), and fp16 halves the weights those ops read. The heavy ops (`FP16_OPS`: MatMul,
Conv, ConvTranspose, LSTM, Gemm) run in fp16 with their weights stored in fp16; every other op
stays in float32, with a Cast to fp16 in front of each heavy op's float inputs and a Cast back
behind its outputs (PyTorch's autocast does the same). The graph's inputs and outputs keep
their types: float32 style and speed in, float32 audio and int64 `duration` out.

Why not the whole graph in fp16 (ONNX Runtime's `convert_float_to_float16`, keep_io_types):
measured on the CPU against the float model, the audio came out at 8 to 16 dB SNR, and with the
sine source kept in fp32 it came out NaN: the generator's STFT phase divides imaginary by real
parts that fp16 rounds to exactly zero (0 / 0), and the harmonic source's phase, a running sum
over samples, overflows fp16's range. Those ops are cheap and stay in float32 here.

Of `FP16_OPS`, each kept in fp32 in turn (`scripts/kokoro_fp16_ops.py`, docs/gpu-sizing.md):
only Conv changes the audio measurably: its magnitude spectrogram at 28.3 dB SNR against the
float model with Conv in fp16, 32.8 dB with it in fp32, and with it in fp16 Whisper base heard
one of 20 sentences differently ("a rare dish" as "a weirdish", one run of the test; with Conv
in fp32 it heard another word differently, so that weighs less than the 4.5 dB). Conv stays in
float32 (`KEEP_FP32`); MatMul (the text encoder's attention and feed-forward), LSTM (the duration and
prosody predictors) and ConvTranspose (the generator's upsampling) run in fp16.

The rewrite is ours (no converter library whose version would change the bytes): the same input
gives the same bytes, pinned by sha256 in the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from .dequantize import write_model

# Ops that do the heavy math (tensor cores on a GPU); the rest of the graph stays float32.
FP16_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "LSTM", "MatMul")
# Of those, the op types kept in float32 for a measured loss of accuracy (see the docstring).
KEEP_FP32: tuple[str, ...] = ("Conv",)
# Inputs that are not float: LSTM's sequence_lens (int32).
_NOT_FLOAT = {("LSTM", 4)}


def to_fp16(model: onnx.ModelProto, ops: tuple[str, ...] | None = None) -> onnx.ModelProto:
    """A copy of `model` whose `ops` (default: FP16_OPS less KEEP_FP32) run in fp16, with their
    float weights stored in fp16 and Casts at their edges; inputs and outputs keep their types."""
    half = set(ops if ops is not None else FP16_OPS) - (
        set() if ops is not None else set(KEEP_FP32)
    )
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    weights16: dict[str, str] = {}  # float32 initializer -> its fp16 copy
    casts16: dict[str, str] = {}  # float32 tensor -> its Cast to fp16 (one per tensor)
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type not in half:
            nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if not name or (node.op_type, i) in _NOT_FLOAT:
                continue
            init = inits.get(name)
            if init is not None:
                if init.data_type != TensorProto.FLOAT:
                    continue
                if name not in weights16:
                    weights16[name] = f"{name}_fp16"
                    value = nh.to_array(init).astype(np.float16)
                    new_inits.append(nh.from_array(value, weights16[name]))
                node.input[i] = weights16[name]
                continue
            if name not in casts16:
                casts16[name] = f"{name}_to_fp16"
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [name],
                        [casts16[name]],
                        name=f"{name}_cast16",
                        to=TensorProto.FLOAT16,
                    )
                )
            node.input[i] = casts16[name]
        outputs = list(node.output)
        for i, name in enumerate(outputs):
            if name:
                node.output[i] = f"{name}_fp16"
        nodes.append(node)
        for name in outputs:
            if name:
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [f"{name}_fp16"],
                        [name],
                        name=f"{name}_cast32",
                        to=TensorProto.FLOAT,
                    )
                )
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend([*kept, *new_inits])
    out.producer_name, out.producer_version = "gateway.fp16", "1"
    return out


def fp16_file(src: Path, dest: Path) -> str:
    """Write the fp16 model of `src` to `dest` atomically and deterministically; returns its
    sha256."""
    return write_model(to_fp16(onnx.load(str(src))), dest)
