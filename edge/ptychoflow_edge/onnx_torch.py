"""An ONNX graph as a ``torch.nn.Module``, for the operators PtychoNN-style networks export to.

The edge's contract is ``model.onnx`` (its sha256 is in the manifest). Many edge GPU boxes
have torch with CUDA but no onnxruntime-gpu (255 MB) and no TensorRT, so the torch backend
runs that same file: each node becomes the torch call the ONNX operator specification
describes, in graph order. Anything outside the supported set is refused with the operator
and attribute named (``UnsupportedModel``), and the edge falls back to ONNX Runtime on the
CPU: a model is never run by a guess. The tests compare every operator against ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Op = Callable[..., torch.Tensor]


class UnsupportedModel(ValueError):
    """The graph uses something this converter does not implement; the message names it."""


@dataclass(frozen=True)
class Port:
    """A graph input or output, shaped like ONNX Runtime's NodeArg (``name``, ``shape``):
    each dimension an int, or a string for a symbolic (dynamic) one."""

    name: str
    shape: list[int | str]


class _Node:
    """One ONNX node: attributes as Python values, and the constants among its inputs."""

    def __init__(self, proto: Any, constants: dict[str, np.ndarray]) -> None:
        from onnx import helper

        self.proto = proto
        self.op = proto.op_type
        self.attrs = {a.name: _plain(helper.get_attribute_value(a)) for a in proto.attribute}
        self.inputs = list(proto.input)
        self._constants = constants

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def refuse(self, problem: str) -> UnsupportedModel:
        return UnsupportedModel(f"node {self.proto.name or self.op!r} ({self.op}): {problem}")

    def constant(self, index: int) -> np.ndarray | None:
        """Input `index` as a constant array, None if absent; refused if computed at run time."""
        if index >= len(self.inputs) or not self.inputs[index]:
            return None
        name = self.inputs[index]
        if name not in self._constants:
            raise self.refuse(f"input {name!r} must be a constant (initializer or Constant node)")
        return self._constants[name]

    def only(self, name: str, allowed: tuple[Any, ...], default: Any) -> Any:
        value = self.attr(name, default)
        if value not in allowed:
            raise self.refuse(f"{name}={value!r} is not supported (supported: {', '.join(map(repr, allowed))})")
        return value


def _plain(value: Any) -> Any:
    """bytes -> str and repeated fields -> list, so attributes compare as plain values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- operators ------------------------------------------------------------------------------
def _pads_2d(node: _Node) -> tuple[int, int, int, int]:
    """ONNX pads [top, left, bottom, right] (explicit, or none for VALID / NOTSET)."""
    node.only("auto_pad", ("NOTSET", "VALID"), "NOTSET")
    pads = node.attr("pads", [0, 0, 0, 0])
    if len(pads) != 4:
        raise node.refuse(f"only 2-D is supported (pads {pads})")
    return tuple(int(p) for p in pads)  # type: ignore[return-value]


def _symmetric_or_pad(node: _Node, fill: float) -> tuple[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]]:
    """torch pads both sides alike; asymmetric ONNX pads are applied explicitly first."""
    top, left, bottom, right = _pads_2d(node)
    if (top, left) == (bottom, right):
        return (top, left), lambda x: x
    return (0, 0), lambda x: F.pad(x, (left, right, top, bottom), value=fill)


def _kernel_2d(node: _Node) -> list[int]:
    kernel = node.attr("kernel_shape")
    if kernel is not None and len(kernel) != 2:
        raise node.refuse(f"only 2-D is supported (kernel_shape {kernel})")
    return kernel


def _conv(node: _Node) -> Op:
    _kernel_2d(node)
    padding, pad = _symmetric_or_pad(node, 0.0)
    stride, dilation, groups = node.attr("strides", [1, 1]), node.attr("dilations", [1, 1]), node.attr("group", 1)
    return lambda x, w, b=None: F.conv2d(pad(x), w, b, stride, padding, dilation, groups)


def _conv_transpose(node: _Node) -> Op:
    _kernel_2d(node)
    if node.attr("output_shape") is not None:
        raise node.refuse("output_shape is not supported (give pads and output_padding)")
    top, left, bottom, right = _pads_2d(node)
    if (top, left) != (bottom, right):
        raise node.refuse(f"asymmetric pads {[top, left, bottom, right]} are not supported")
    stride, dilation = node.attr("strides", [1, 1]), node.attr("dilations", [1, 1])
    output_padding, groups = node.attr("output_padding", [0, 0]), node.attr("group", 1)
    return lambda x, w, b=None: F.conv_transpose2d(x, w, b, stride, (top, left), output_padding, groups, dilation)


def _batch_norm(node: _Node) -> Op:
    if node.attr("training_mode", 0):
        raise node.refuse("training_mode=1 is not an inference graph")
    eps = node.attr("epsilon", 1e-5)
    return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


def _max_pool(node: _Node) -> Op:
    kernel = _kernel_2d(node)
    if len(node.proto.output) > 1 and node.proto.output[1]:
        raise node.refuse("the Indices output is not supported")
    padding, pad = _symmetric_or_pad(node, float("-inf"))
    stride, dilation = node.attr("strides", [1, 1]), node.attr("dilations", [1, 1])
    ceil = bool(node.attr("ceil_mode", 0))
    return lambda x: F.max_pool2d(pad(x), kernel, stride, padding, dilation, ceil)


def _average_pool(node: _Node) -> Op:
    kernel = _kernel_2d(node)
    top, left, bottom, right = _pads_2d(node)
    if (top, left) != (bottom, right):
        raise node.refuse(f"asymmetric pads {[top, left, bottom, right]} are not supported")
    stride, ceil = node.attr("strides", [1, 1]), bool(node.attr("ceil_mode", 0))
    include = bool(node.attr("count_include_pad", 0))
    return lambda x: F.avg_pool2d(x, kernel, stride, (top, left), ceil, include)


# (mode, coordinate_transformation_mode, nearest_mode) -> torch interpolate mode, align_corners
_RESIZE_MODES: dict[tuple[str, str, str | None], tuple[str, bool | None]] = {
    ("nearest", "asymmetric", "floor"): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("linear", "half_pixel", None): ("bilinear", False),
    ("linear", "pytorch_half_pixel", None): ("bilinear", False),
    ("linear", "align_corners", None): ("bilinear", True),
}


def _resize(node: _Node) -> Op:
    mode = node.attr("mode", "nearest")
    transform = node.attr("coordinate_transformation_mode", "half_pixel")
    nearest = node.attr("nearest_mode", "round_prefer_floor") if mode == "nearest" else None
    key = (mode, transform, nearest)
    if key not in _RESIZE_MODES:
        raise node.refuse(f"mode={mode}, coordinate_transformation_mode={transform}"
                          + (f", nearest_mode={nearest}" if nearest else "") + " is not supported")
    if node.attr("antialias", 0) or node.attr("axes") is not None:
        raise node.refuse("antialias and axes are not supported")
    torch_mode, align = _RESIZE_MODES[key]
    if len(node.inputs) == 2:
        raise node.refuse("the opset-10 form Resize(X, scales) is not supported (export with opset >= 11)")
    scales, sizes = node.constant(2), node.constant(3)
    if sizes is not None and sizes.size:
        if sizes.size != 4:
            raise node.refuse(f"sizes {sizes.tolist()} is not 4-D")
        size = [int(s) for s in sizes[2:]]
        return lambda x: F.interpolate(x, size=size, mode=torch_mode, align_corners=align)
    if scales is None or scales.size != 4 or scales[0] != 1 or scales[1] != 1:
        raise node.refuse(f"scales {None if scales is None else scales.tolist()} must be [1, 1, sy, sx]")
    factor = [float(s) for s in scales[2:]]
    return lambda x: F.interpolate(x, scale_factor=factor, mode=torch_mode, align_corners=align,
                                   recompute_scale_factor=False)


def _clip(node: _Node) -> Op:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11: bounds are attributes
        low, high = node.attr("min"), node.attr("max")
        return lambda x: torch.clamp(x, low, high)
    return lambda x, low=None, high=None: torch.clamp(x, low, high)


def _concat(node: _Node) -> Op:
    axis = node.attr("axis")
    return lambda *xs: torch.cat(xs, dim=axis)


def _leaky_relu(node: _Node) -> Op:
    slope = node.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, slope)


def _simple(fn: Op) -> Callable[[_Node], Op]:
    return lambda node: fn


def _identity(x: torch.Tensor, *_: Any) -> torch.Tensor:
    return x


_BUILDERS: dict[str, Callable[[_Node], Op]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "Resize": _resize,
    "Relu": _simple(torch.relu),
    "LeakyRelu": _leaky_relu,
    "Sigmoid": _simple(torch.sigmoid),
    "Tanh": _simple(torch.tanh),
    "Clip": _clip,
    "Add": _simple(torch.add),
    "Sub": _simple(torch.sub),
    "Mul": _simple(torch.mul),
    "Div": _simple(torch.div),
    "Concat": _concat,
    "Identity": _simple(_identity),
    "Dropout": _simple(_identity),  # inference: Dropout passes its input through
}
SUPPORTED_OPS = tuple(sorted(_BUILDERS))
_STATIC_ONLY = {"Resize": (1, 2, 3)}  # inputs read at build time (roi, scales, sizes), never at run time


class OnnxModule(nn.Module):
    """Runs an ONNX graph with torch: ``forward(*inputs)`` returns every graph output, in order.

    Initializers and Constant nodes become buffers, so ``.to(device, dtype)`` moves and casts
    the weights exactly as it would for a hand-written module.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        for opset in model.opset_import:
            if opset.domain not in ("", "ai.onnx"):
                raise UnsupportedModel(f"operator domain {opset.domain!r} is not supported (standard ONNX only)")
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self._buffer_of: dict[str, str] = {}
        self._steps: list[tuple[Op, list[str], str]] = []
        for proto in graph.node:
            node = _Node(proto, constants)
            if node.op == "Constant":
                constants[proto.output[0]] = _constant_value(node)
                continue
            if node.op not in _BUILDERS:
                raise node.refuse(f"operator not supported by the torch backend (supported: {', '.join(SUPPORTED_OPS)})")
            if len([o for o in proto.output if o]) != 1 and node.op != "Dropout":
                raise node.refuse(f"{len(proto.output)} outputs; only single-output nodes are supported")
            static = _STATIC_ONLY.get(node.op, ())
            inputs = [name for i, name in enumerate(node.inputs) if i not in static]
            while inputs and not inputs[-1]:  # trailing optional inputs left empty
                inputs.pop()
            if "" in inputs:
                raise node.refuse("an optional input is skipped before a given one")
            self._steps.append((_BUILDERS[node.op](node), inputs, proto.output[0]))
        used = {name for _, names, _ in self._steps for name in names} | {o.name for o in graph.output}
        for index, name in enumerate(sorted(used & set(constants))):
            self.register_buffer(f"const{index}", torch.from_numpy(np.array(constants[name])))
            self._buffer_of[name] = f"const{index}"
        self.inputs = [_port(v) for v in graph.input if v.name not in constants]
        self.outputs = [_port(v) for v in graph.output]
        known = {p.name for p in self.inputs} | set(self._buffer_of) | {out for _, _, out in self._steps}
        missing = sorted({name for _, names, _ in self._steps for name in names} - known)
        if missing:
            raise UnsupportedModel(f"graph reads values nothing produces: {', '.join(missing[:5])}")

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[str, torch.Tensor] = {name: getattr(self, buffer) for name, buffer in self._buffer_of.items()}
        values.update(zip((p.name for p in self.inputs), inputs))
        for op, names, output in self._steps:
            values[output] = op(*(values[name] for name in names))
        return tuple(values[p.name] for p in self.outputs)


def _constant_value(node: _Node) -> np.ndarray:
    from onnx import numpy_helper

    if "value" in node.attrs:
        return numpy_helper.to_array(next(a.t for a in node.proto.attribute if a.name == "value"))
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                        ("value_ints", np.int64)):
        if name in node.attrs:
            return np.array(node.attrs[name], dtype)
    raise node.refuse(f"constant kind {sorted(node.attrs)} is not supported")


def _port(value_info: Any) -> Port:
    dims = value_info.type.tensor_type.shape.dim
    return Port(value_info.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims])


def load_onnx_module(blob: bytes) -> OnnxModule:
    """Parse serialized ONNX and build the module (fp32, on the CPU); UnsupportedModel if it cannot."""
    import onnx

    try:
        model = onnx.load_from_string(blob)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise UnsupportedModel(f"not a readable ONNX model: {str(exc).splitlines()[0][:200]}") from None
    return OnnxModule(model)
