"""The reference MIL evaluator's values of ops: coremltools' own value inference, bound to a run's
values, and kernels (numpy, torch.nn.functional) for the ops it has none for or gets wrong."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def inferred(op, env: dict):
    """An op's value through coremltools' own value inference, its inputs bound to this run's values."""
    for var in input_vars(op):
        value = env.get(var.name, var.val)
        if value is not None:
            holder = var.sym_type()
            holder.val = plain(value)
            var._sym_val = holder
    return op.value_inference()


def input_vars(op):
    for value in op.inputs.values():
        yield from (value if isinstance(value, (list, tuple)) else (value,))


def plain(value):
    """numpy 2 rejects np.bool_ where Python wants a bool (keepdims=...)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == np.bool_:
        return bool(value)
    return value


def has_value_inference(op) -> bool:
    from coremltools.converters.mil.mil.operation import Operation

    return type(op).value_inference is not Operation.value_inference


def _torch_nchw(fn):
    """Run a torch.nn.functional kernel in float32, keep the program's dtype."""
    def kernel(a):
        import torch

        x = a["x"]
        out = fn(torch.from_numpy(np.asarray(x, dtype=np.float32)), a)
        return out.numpy().astype(np.asarray(x).dtype)
    return kernel


def _padding(a):
    if a.get("pad_type") == "custom":
        return [int(p) for p in np.asarray(a["pad"])[::2]]
    if a.get("pad_type") == "same":
        return "same"
    return 0


def _conv(x, a):
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(np.asarray(a["weight"], dtype=np.float32))
    bias = None if a.get("bias") is None else torch.from_numpy(np.asarray(a["bias"], dtype=np.float32))
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.ndim]
    return fn(x, weight, bias, stride=tuple(int(s) for s in a["strides"]), padding=_padding(a),
              dilation=tuple(int(d) for d in a["dilations"]), groups=int(a["groups"]))


def _pool(kind):
    def pool(x, a):
        import torch.nn.functional as F

        args: dict[str, Any] = dict(kernel_size=tuple(int(k) for k in a["kernel_sizes"]),
                                    stride=tuple(int(s) for s in a["strides"]),
                                    padding=_padding(a) or 0, ceil_mode=bool(a.get("ceil_mode", False)))
        if kind == "max":
            return F.max_pool2d(x, **args)
        return F.avg_pool2d(x, count_include_pad=not bool(a.get("exclude_padding_from_average", False)), **args)
    return pool


def _batch_norm(x, a):
    import torch.nn.functional as F
    import torch

    t = {k: torch.from_numpy(np.asarray(a[k], dtype=np.float32)) if a.get(k) is not None else None
         for k in ("mean", "variance", "gamma", "beta")}
    return F.batch_norm(x, t["mean"], t["variance"], t["gamma"], t["beta"], training=False,
                        eps=float(a.get("epsilon", 1e-5)))


def _dequantize(a):
    x = np.asarray(a["input"]).astype(np.float32)
    zero: Any = 0 if a.get("zero_point") is None else np.asarray(a["zero_point"]).astype(np.float32)
    scale = np.asarray(a["scale"], dtype=np.float32)
    axis = a.get("axis")
    if axis is not None and scale.ndim == 1:
        shape = [1] * x.ndim
        shape[int(axis)] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if np.ndim(zero) == 1 else zero
    return ((x - zero) * scale).astype(np.float32)


_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "uint16": np.uint16,
           "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
_ACTIVATIONS: dict[str, Callable[[Any], Any]] = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
                "linear": lambda v: v}


def _lstm(a):
    """MIL's lstm (one direction): x <s, b, I>, gates stacked input, forget, output, cell."""
    direction = str(a.get("direction") or "forward")
    if direction == "bidirectional" or a.get("peephole") is not None or a.get("clip") is not None:
        raise NotImplementedError(f"lstm with direction {direction}, peepholes or a clip")
    gate, cell, out_act = (_ACTIVATIONS[str(a.get(k) or default)] for k, default in
                           (("recurrent_activation", "sigmoid"), ("cell_activation", "tanh"), ("activation", "tanh")))
    x, h, c = (np.asarray(a[k], dtype=np.float32) for k in ("x", "initial_h", "initial_c"))
    w_ih, w_hh = np.asarray(a["weight_ih"], np.float32), np.asarray(a["weight_hh"], np.float32)
    bias = np.zeros(w_ih.shape[0], np.float32) if a.get("bias") is None else np.asarray(a["bias"], np.float32)
    steps = []
    for t in (range(len(x)) if direction == "forward" else reversed(range(len(x)))):
        i, f, o, z = np.split(x[t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=-1)
        c = gate(f) * c + gate(i) * cell(z)
        h = gate(o) * out_act(c)
        steps.append(h)
    sequence = np.stack(steps if direction == "forward" else steps[::-1])
    return (sequence if a.get("output_sequence") else h[None]), h, c


KERNELS = {
    "conv": _torch_nchw(_conv),
    "max_pool": _torch_nchw(_pool("max")),
    "avg_pool": _torch_nchw(_pool("avg")),
    "batch_norm": _torch_nchw(_batch_norm),
    "reshape": lambda a: np.reshape(a["x"], [int(d) for d in np.asarray(a["shape"])]),
    "dequantize": _dequantize,
    # coremltools' own value inference of the reductions passes keep_dims as numpy.bool, which numpy rejects
    "reduce_mean": lambda a: _reduce(np.mean, a),
    "reduce_sum": lambda a: _reduce(np.sum, a),
    "reduce_max": lambda a: _reduce(np.max, a),
    "reduce_l2_norm": lambda a: _reduce(_l2_norm, a),  # F.normalize: sentence embeddings (WordLlama)
    "expand_dims": lambda a: np.expand_dims(a["x"], tuple(int(d) for d in np.asarray(a["axes"]).ravel())),
    "squeeze": lambda a: np.squeeze(a["x"], None if a.get("axes") is None
                                    else tuple(int(d) for d in np.asarray(a["axes"]).ravel())),
    "lstm": _lstm,
    # value inference gives a dynamic batch's size as a symbol, and nothing for its cast
    "shape": lambda a: np.asarray(np.shape(a["x"]), dtype=np.int32),
    "cast": lambda a: np.asarray(a["x"]).astype(_DTYPES[str(a["dtype"])]),
    "silu": lambda a: a["x"] * _ACTIVATIONS["sigmoid"](np.asarray(a["x"], np.float32)),  # MobileViT, EfficientNet
}


def _reduce(fn, a):
    axes = a.get("axes")
    axis = None if axes is None else tuple(int(d) for d in np.asarray(axes).ravel())
    return fn(a["x"], axis=axis, keepdims=bool(a.get("keep_dims", False)))


def _l2_norm(x, axis, keepdims):
    x = np.asarray(x)
    return np.sqrt(np.sum(np.square(x.astype(np.float32)), axis=axis, keepdims=keepdims)).astype(x.dtype)
