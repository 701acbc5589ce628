"""onnx.checker subset: structural checks only.

The real checker also validates every node against the operator schemas. This
one checks what a converter bug would most likely break: the opset import,
graph topology (every input defined before use, outputs unique, graph outputs
produced), initializer sizes, attribute types, and that each operator is one
of those the upscaler converter emits (so anything else fails loudly instead
of passing unchecked). models/export/verify_upscalers.py remains the numeric
check against ncnn on a developer machine.
"""
from __future__ import annotations

from math import prod

from onnx import AttributeProto, ModelProto, TensorProto

MAXIMUM_PROTOBUF = 2**31 - 1
KNOWN_OPS = {
    "Add", "Concat", "Conv", "DepthToSpace", "Div", "LeakyRelu", "Mul", "PRelu", "Relu", "Resize",
    "Sub", "Sum",
}
_ITEM_SIZE = {
    TensorProto.FLOAT: 4, TensorProto.UINT8: 1, TensorProto.INT8: 1, TensorProto.UINT16: 2,
    TensorProto.INT16: 2, TensorProto.INT32: 4, TensorProto.INT64: 8, TensorProto.BOOL: 1,
    TensorProto.FLOAT16: 2, TensorProto.DOUBLE: 8, TensorProto.UINT32: 4, TensorProto.UINT64: 8,
}
_ATTR_FIELD = {
    AttributeProto.FLOAT: "f", AttributeProto.INT: "i", AttributeProto.STRING: "s",
    AttributeProto.TENSOR: "t",
}
_ATTR_LIST = {
    AttributeProto.FLOATS: "floats", AttributeProto.INTS: "ints", AttributeProto.STRINGS: "strings",
    AttributeProto.TENSORS: "tensors",
}


class ValidationError(Exception):
    pass


def check_model(model: ModelProto, full_check: bool = False) -> None:  # noqa: ARG001 - onnx's signature
    if model.ir_version < 3:
        raise ValidationError("model.ir_version is not set")
    default = [o for o in model.opset_import if o.domain == ""]
    if len(default) != 1 or not 1 <= default[0].version <= 23:
        raise ValidationError("the model needs exactly one default-domain opset import (1..23)")
    graph = model.graph
    if not graph.name:
        raise ValidationError("the graph has no name")
    defined: set[str] = set()
    for value in graph.input:
        if not value.name or value.name in defined:
            raise ValidationError(f"graph input {value.name!r} is empty or duplicated")
        defined.add(value.name)
    for tensor in graph.initializer:
        if not tensor.name or tensor.name in defined:
            raise ValidationError(f"initializer {tensor.name!r} is unnamed or duplicated")
        size = _ITEM_SIZE.get(tensor.data_type)
        if size is None or len(tensor.raw_data) != size * prod(tensor.dims):
            raise ValidationError(f"initializer {tensor.name!r}: raw_data does not match its dims/type")
        defined.add(tensor.name)
    for index, node in enumerate(graph.node):
        label = node.name or f"node {index} ({node.op_type})"
        if node.op_type not in KNOWN_OPS or node.domain not in ("", "ai.onnx"):
            raise ValidationError(f"{label}: operator {node.op_type!r} is not checked by onnx-lite")
        for name in node.input:
            if name and name not in defined:
                raise ValidationError(f"{label}: input {name!r} is not defined before use")
        for name in node.output:
            if not name or name in defined:
                raise ValidationError(f"{label}: output {name!r} is empty or already defined")
            defined.add(name)
        seen = set()
        for attr in node.attribute:
            if not attr.name or attr.name in seen:
                raise ValidationError(f"{label}: attribute {attr.name!r} is unnamed or duplicated")
            seen.add(attr.name)
            if attr.type in _ATTR_FIELD:
                if not attr.HasField(_ATTR_FIELD[attr.type]):
                    raise ValidationError(f"{label}: attribute {attr.name!r} has no value of its type")
            elif attr.type in _ATTR_LIST:
                if not getattr(attr, _ATTR_LIST[attr.type]):
                    raise ValidationError(f"{label}: attribute {attr.name!r} has an empty list")
            else:
                raise ValidationError(f"{label}: attribute {attr.name!r} has an unsupported type")
    for value in graph.output:
        if value.name not in defined:
            raise ValidationError(f"graph output {value.name!r} is never produced")
    if model.ByteSize() > MAXIMUM_PROTOBUF:
        raise ValidationError("the model is larger than the 2 GB protobuf limit")
