"""onnx.helper subset: the same field-setting order and presence rules as onnx's own helpers."""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from onnx import (
    IR_VERSION,
    AttributeProto,
    GraphProto,
    ModelProto,
    NodeProto,
    OperatorSetIdProto,
    TensorProto,
    TypeProto,
    ValueInfoProto,
)

DEFAULT_OPSET = 17


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def make_attribute(key: str, value: Any, doc_string: str | None = None) -> AttributeProto:
    attr = AttributeProto()
    attr.name = key
    if doc_string:
        attr.doc_string = doc_string
    if isinstance(value, numbers.Integral):
        attr.i = int(value)
        attr.type = AttributeProto.INT
    elif isinstance(value, numbers.Real):
        attr.f = float(value)
        attr.type = AttributeProto.FLOAT
    elif isinstance(value, (str, bytes)):
        attr.s = _to_bytes(value)
        attr.type = AttributeProto.STRING
    elif isinstance(value, TensorProto):
        attr.t.CopyFrom(value)
        attr.type = AttributeProto.TENSOR
    elif isinstance(value, Iterable):
        value = list(value)
        if not value:
            raise ValueError(f"Could not infer attribute `{key}` type from empty iterator")
        if all(isinstance(v, numbers.Integral) for v in value):
            attr.ints.extend(int(v) for v in value)
            attr.type = AttributeProto.INTS
        elif all(isinstance(v, numbers.Real) for v in value):
            attr.floats.extend(float(v) for v in value)
            attr.type = AttributeProto.FLOATS
        elif all(isinstance(v, (str, bytes)) for v in value):
            attr.strings.extend(_to_bytes(v) for v in value)
            attr.type = AttributeProto.STRINGS
        elif all(isinstance(v, TensorProto) for v in value):
            attr.tensors.extend(value)
            attr.type = AttributeProto.TENSORS
        else:
            raise ValueError(f"attribute `{key}`: unsupported element types")
    else:
        raise TypeError(f"'{value}' is not an accepted attribute value.")
    return attr


def make_node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str | None = None,
              doc_string: str | None = None, domain: str | None = None, overload: str | None = None,
              **kwargs: Any) -> NodeProto:
    node = NodeProto()
    node.op_type = op_type
    node.input.extend(inputs)
    node.output.extend(outputs)
    if name:
        node.name = name
    if doc_string:
        node.doc_string = doc_string
    if domain is not None:
        node.domain = domain
    if overload is not None:
        node.overload = overload
    if kwargs:
        node.attribute.extend(
            make_attribute(key, value) for key, value in sorted(kwargs.items()) if value is not None)
    return node


def make_graph(nodes: Sequence[NodeProto], name: str, inputs: Sequence[ValueInfoProto],
               outputs: Sequence[ValueInfoProto], initializer: Sequence[TensorProto] | None = None,
               doc_string: str | None = None,
               value_info: Sequence[ValueInfoProto] | None = None) -> GraphProto:
    graph = GraphProto()
    graph.node.extend(nodes)
    graph.name = name
    graph.input.extend(inputs)
    graph.output.extend(outputs)
    graph.initializer.extend(initializer or [])
    graph.value_info.extend(value_info or [])
    if doc_string:
        graph.doc_string = doc_string
    return graph


def make_tensor_type_proto(elem_type: int, shape: Sequence[str | int | None] | None) -> TypeProto:
    type_proto = TypeProto()
    tensor_type = type_proto.tensor_type
    tensor_type.elem_type = elem_type
    shape_proto = tensor_type.shape
    if shape is not None:
        shape_proto.dim.extend([])
        for d in shape:
            dim = shape_proto.dim.add()
            if d is None:
                pass
            elif isinstance(d, int):
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d
            else:
                raise ValueError(f"Invalid item in shape: {d}. Needs to be of int or str.")
    return type_proto


def make_tensor_value_info(name: str, elem_type: int, shape: Sequence[str | int | None] | None,
                           doc_string: str = "") -> ValueInfoProto:
    value_info = ValueInfoProto()
    value_info.name = name
    if doc_string:
        value_info.doc_string = doc_string
    value_info.type.CopyFrom(make_tensor_type_proto(elem_type, shape))
    return value_info


def make_opsetid(domain: str, version: int) -> OperatorSetIdProto:
    opsetid = OperatorSetIdProto()
    opsetid.domain = domain
    opsetid.version = version
    return opsetid


def make_model(graph: GraphProto, **kwargs: Any) -> ModelProto:
    model = ModelProto()
    model.ir_version = IR_VERSION
    model.graph.CopyFrom(graph)
    opset_imports = kwargs.pop("opset_imports", None)
    if opset_imports is not None:
        model.opset_import.extend(opset_imports)
    else:
        model.opset_import.add().version = DEFAULT_OPSET
    for key, value in kwargs.items():
        setattr(model, key, value)
    return model
