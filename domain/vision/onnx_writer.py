"""A minimal ONNX ModelProto writer (protobuf wire format by hand), so building the classifier graph needs
neither the `onnx` package nor torch: onnxruntime loads the bytes directly.

Only what the EfficientNet graph uses: float32 initializers (raw_data), nodes with int / ints attributes,
graph inputs/outputs with symbolic or fixed dims. Field numbers are from onnx/onnx.proto (IR version 8).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

FLOAT = 1  # TensorProto.DataType.FLOAT
_ATTR_INT, _ATTR_INTS = 2, 7  # AttributeProto.AttributeType


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field_no: int, wire: int) -> bytes:
    return _varint((field_no << 3) | wire)


def _int(field_no: int, v: int) -> bytes:
    return _key(field_no, 0) + _varint(int(v))


def _bytes(field_no: int, b: bytes) -> bytes:
    return _key(field_no, 2) + _varint(len(b)) + b


def _str(field_no: int, s: str) -> bytes:
    return _bytes(field_no, s.encode("utf-8"))


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, int | list[int]] = field(default_factory=dict)

    def encode(self, name: str) -> bytes:
        out = b"".join(_str(1, i) for i in self.inputs) + b"".join(_str(2, o) for o in self.outputs)
        out += _str(3, name) + _str(4, self.op)
        for k, v in self.attrs.items():
            if isinstance(v, (list, tuple)):
                a = _str(1, k) + b"".join(_int(8, x) for x in v) + _int(20, _ATTR_INTS)
            else:
                a = _str(1, k) + _int(3, v) + _int(20, _ATTR_INT)
            out += _bytes(5, a)
        return out


def _tensor(name: str, arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype="<f4")
    return b"".join(_int(1, d) for d in arr.shape) + _int(2, FLOAT) + _str(8, name) + _bytes(9, arr.tobytes())


def _value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, FLOAT) + _bytes(2, shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def model_bytes(nodes: list[Node], initializers: dict[str, np.ndarray], inputs: dict[str, list[int | str]],
                outputs: dict[str, list[int | str]], *, name: str = "graph", opset: int = 13,
                ir_version: int = 8) -> bytes:
    graph = b"".join(_bytes(1, n.encode(f"n{i}")) for i, n in enumerate(nodes))
    graph += _str(2, name)
    graph += b"".join(_bytes(5, _tensor(k, v)) for k, v in initializers.items())
    graph += b"".join(_bytes(11, _value_info(k, d)) for k, d in inputs.items())
    graph += b"".join(_bytes(12, _value_info(k, d)) for k, d in outputs.items())
    opset_id = _str(1, "") + _int(2, opset)
    return _int(1, ir_version) + _str(2, "assetstream") + _bytes(7, graph) + _bytes(8, opset_id)


assert struct.calcsize("<f") == 4
