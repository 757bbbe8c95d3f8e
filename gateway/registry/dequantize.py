"""Derive a float ONNX model from a dynamically quantized (int8) one, exactly.

ONNX Runtime has no CUDA kernels for the integer ops of a dynamically quantized model
(MatMulInteger, ConvInteger, DynamicQuantizeLinear, DynamicQuantizeLSTM): on the GPU they run on
the CPU behind hundreds of Memcpy nodes, slower than the CPU alone. The same int8 weights,
dequantized as (q - zero_point) x scale into MatMul, Conv and LSTM, run every heavy op on CUDA.

Rewrites, each keeping the output name of the pattern it replaces so consumers are untouched:
- DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul(x_scale * w_scale)   =>  MatMul(x, W)
- DynamicQuantizeLinear(x) -> ConvInteger [-> Add(quantized bias)] -> Cast -> Mul  =>  Conv(x, W[, b])
  (b is the float bias the quantized one was computed from)
- DynamicQuantizeLSTM(W_q, R_q, scales, zero points)  =>  LSTM(W, R) with W and R transposed
  from [directions, input, 4*hidden] back to ONNX's [directions, 4*hidden, input]
- Gather(q) -> DequantizeLinear, and DequantizeLinear of a constant  =>  float constants
Nodes left without consumers (the quantizers, scale products, bias quantization) are dropped.

The output is written deterministically: the same input gives the same bytes, pinned by sha256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper as nh

INTEGER_OPS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
        "DynamicQuantizeLSTM",
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearMatMul",
        "QLinearConv",
    }
)


class DequantizeError(ValueError):
    """The model has a quantized pattern this rewriter does not know."""


class _Graph:
    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in graph.node:
            for i in n.input:
                self.consumers[i].append(n)
        self.replace: dict[int, onnx.NodeProto | None] = {}  # id(old node) -> new node or drop
        self.new_inits: dict[str, np.ndarray] = {}

    def const(self, name: str) -> np.ndarray:
        if name in self.new_inits:
            return self.new_inits[name]
        if name not in self.inits:
            raise DequantizeError(f"{name!r} is not a constant")
        return nh.to_array(self.inits[name])

    def only_consumer(self, name: str, op: str) -> onnx.NodeProto:
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op:
            found = [u.op_type for u in users]
            raise DequantizeError(f"{name!r}: expected one {op} consumer, found {found}")
        return users[0]

    def add_const(self, name: str, value: np.ndarray) -> str:
        self.new_inits[name] = value
        return name


def _name(node: onnx.NodeProto) -> str:
    return (node.name or node.output[0]) + "_float"


def _dequant(q: np.ndarray, zero_point: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """(q - zero_point) x scale, per tensor or per channel along `axis`; exact in float32 because
    (q - zp) is a small integer and one product rounds once."""
    shape = [1] * q.ndim
    zp = zero_point.astype(np.float64)
    sc = scale.astype(np.float64)
    if zp.ndim:
        shape[axis] = -1
        zp = zp.reshape(shape)
    if sc.ndim:
        shape[axis] = -1
        sc = sc.reshape(shape)
    return ((q.astype(np.float64) - zp) * sc).astype(np.float32)


def _scale_of_weight(g: _Graph, mul: onnx.NodeProto, x_scale: str) -> np.ndarray:
    """The weight's scale: the constant side of the Mul(x_scale, w_scale) feeding `mul`."""
    product = next(i for i in mul.input if i in g.producer and g.producer[i].op_type == "Mul")
    scales = g.producer[product]
    others = [i for i in scales.input if i != x_scale]
    if len(others) != 1:
        raise DequantizeError(f"{scales.name}: not a product of the input and weight scales")
    return g.const(others[0])


def _float_bias(g: _Graph, name: str) -> np.ndarray:
    """Walk back from a quantized bias (Reshape <- Cast <- Floor|Round <- Div(bias, scale))."""
    node = g.producer.get(name)
    for _ in range(6):
        if node is None:
            break
        if node.op_type == "Div" and node.input[0] in g.inits:
            return g.const(node.input[0])
        node = g.producer.get(node.input[0])
    raise DequantizeError(f"cannot find the float bias behind {name!r}")


def _rewrite_integer_op(g: _Graph, node: onnx.NodeProto) -> None:
    x_q, w_q, _x_zp, w_zp = (list(node.input) + ["", "", "", ""])[:4]
    quantizer = g.producer.get(x_q)
    if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear":
        raise DequantizeError(f"{node.name}: input is not dynamically quantized")
    x_float, x_scale = quantizer.input[0], quantizer.output[1]
    users = g.consumers[node.output[0]]
    bias_add = users[0] if len(users) == 1 and users[0].op_type == "Add" else None
    after = bias_add.output[0] if bias_add is not None else node.output[0]
    cast = g.only_consumer(after, "Cast")
    mul = g.only_consumer(cast.output[0], "Mul")
    w_scale = _scale_of_weight(g, mul, x_scale)
    q = g.const(w_q)
    zp = g.const(w_zp) if w_zp else np.zeros((), q.dtype)
    if node.op_type == "MatMulInteger":  # B is [K, N]; per-channel along N
        weight = _dequant(q, zp, w_scale, axis=q.ndim - 1)
        inputs = [x_float, g.add_const(f"{w_q}_dequantized", weight)]
        new = helper.make_node("MatMul", inputs, [mul.output[0]], name=_name(node))
    else:  # ConvInteger: W is [M, C/group, k...]; per-channel along M
        weight = _dequant(q, zp, w_scale, axis=0)
        inputs = [x_float, g.add_const(f"{w_q}_dequantized", weight)]
        if bias_add is not None:
            qbias = next(i for i in bias_add.input if i != node.output[0])
            bias = _float_bias(g, qbias).astype(np.float32)
            inputs.append(g.add_const(f"{node.name}_bias_float", bias))
        new = helper.make_node("Conv", inputs, [mul.output[0]], name=_name(node))
        new.attribute.extend(node.attribute)
    g.replace[id(node)] = new
    for old in (bias_add, cast, mul):
        if old is not None:
            g.replace[id(old)] = None


def _dequant_lstm(q: np.ndarray, zero_point: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per direction ([directions]) or per direction and gate channel ([directions, 4*hidden])."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.float64)
        return v[:, None, None] if v.ndim == 1 else v[:, None, :] if v.ndim == 2 else v

    return ((q.astype(np.float64) - spread(zero_point)) * spread(scale)).astype(np.float32)


def _rewrite_lstm(g: _Graph, node: onnx.NodeProto) -> None:
    ins = list(node.input) + [""] * (12 - len(node.input))
    (x, w_q, r_q, b, seq, h0, c0, p, w_scale, w_zp, r_scale, r_zp) = ins[:12]
    # quantized as [directions, input, 4*hidden]; ONNX wants [directions, 4*hidden, input]
    w = _dequant_lstm(g.const(w_q), g.const(w_zp), g.const(w_scale)).transpose(0, 2, 1)
    r = _dequant_lstm(g.const(r_q), g.const(r_zp), g.const(r_scale)).transpose(0, 2, 1)
    inputs = [
        x,
        g.add_const(f"{w_q}_dequantized", np.ascontiguousarray(w)),
        g.add_const(f"{r_q}_dequantized", np.ascontiguousarray(r)),
        b,
        seq,
        h0,
        c0,
        p,
    ]
    while inputs and not inputs[-1]:
        inputs.pop()
    new = helper.make_node("LSTM", inputs, list(node.output), name=_name(node))
    new.attribute.extend(node.attribute)
    g.replace[id(node)] = new


def _rewrite_dequantize_linear(g: _Graph, node: onnx.NodeProto) -> None:
    data, scale, zp = (list(node.input) + ["", ""])[:3]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    scale_v = g.const(scale)
    if data in g.inits:  # a constant: fold it
        q = g.const(data)
        zp_v = g.const(zp) if zp else np.zeros((), q.dtype)
        g.add_const(node.output[0], _dequant(q, zp_v, scale_v, axis if scale_v.ndim else 0))
        g.replace[id(node)] = None
        return
    gather = g.producer.get(data)
    if gather is None or gather.op_type != "Gather" or gather.input[0] not in g.inits:
        raise DequantizeError(f"{node.name}: DequantizeLinear of a dynamic tensor")
    if scale_v.ndim:
        raise DequantizeError(f"{node.name}: per-channel scale behind a Gather")
    q = g.const(gather.input[0])
    zp_v = g.const(zp) if zp else np.zeros((), q.dtype)
    table = g.add_const(f"{gather.input[0]}_dequantized", _dequant(q, zp_v, scale_v, 0))
    new = helper.make_node("Gather", [table, gather.input[1]], [node.output[0]], name=_name(gather))
    new.attribute.extend(gather.attribute)
    g.replace[id(gather)] = new
    g.replace[id(node)] = None


def _prune(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Drop nodes none of whose outputs are used (repeat until nothing changes)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = set(outputs)
        for n in nodes:
            used.update(n.input)
            for attr in n.attribute:  # subgraphs (If/Loop) read names from the outer scope
                for sub in [attr.g, *attr.graphs]:
                    for sn in sub.node:
                        used.update(sn.input)
        kept = [n for n in nodes if any(o in used for o in n.output if o)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def dequantize_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float copy of a dynamically quantized model (see the module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = _Graph(out.graph)
    for node in list(out.graph.node):
        if node.op_type in ("MatMulInteger", "ConvInteger"):
            _rewrite_integer_op(g, node)
        elif node.op_type == "DynamicQuantizeLSTM":
            _rewrite_lstm(g, node)
        elif node.op_type == "DequantizeLinear":
            _rewrite_dequantize_linear(g, node)
        elif node.op_type in ("QLinearMatMul", "QLinearConv", "QuantizeLinear"):
            raise DequantizeError(
                f"{node.name}: static quantization ({node.op_type}) is not handled"
            )
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        new = g.replace.get(id(node), node)
        if new is not None:
            nodes.append(new)
    nodes = _prune(out.graph, nodes)
    used = {i for n in nodes for i in n.input} | {o.name for o in out.graph.output}
    inits = [t for t in out.graph.initializer if t.name in used and t.name not in g.new_inits]
    inits += [nh.from_array(v, k) for k, v in sorted(g.new_inits.items()) if k in used]
    produced = {o for n in nodes for o in n.output}
    value_info = [v for v in out.graph.value_info if v.name in produced]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    del out.graph.value_info[:]
    out.graph.value_info.extend(value_info)
    left = sorted({n.op_type for n in nodes} & INTEGER_OPS)
    if left:
        raise DequantizeError(f"integer ops left after rewriting: {left}")
    out.producer_name, out.producer_version = "gateway.dequantize", "1"
    return out


def integer_ops(path: Path) -> list[str]:
    """The integer/quantization op types a model file still contains (empty for a float model)."""
    model = onnx.load(str(path), load_external_data=False)
    return sorted({n.op_type for n in model.graph.node} & INTEGER_OPS)


def dequantize_file(src: Path, dest: Path) -> str:
    """Write the float model of `src` to `dest` atomically, with deterministic bytes; returns
    their sha256."""
    return write_model(dequantize_model(onnx.load(str(src))), dest)


def write_model(model: onnx.ModelProto, dest: Path) -> str:
    """Write `model` to `dest` atomically, with deterministic bytes; returns their sha256
    (hashed in memory: no second read of the file)."""
    data = model.SerializeToString(deterministic=True)
    digest = hashlib.sha256(data).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest
