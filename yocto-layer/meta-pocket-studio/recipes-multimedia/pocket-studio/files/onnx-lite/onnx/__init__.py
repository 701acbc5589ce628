"""onnx-lite: the part of the `onnx` Python API that fetch_upscalers.py uses.

Why this exists: models/export/fetch_upscalers.py converts the Real-ESRGAN
ncnn weights to ONNX with numpy and the `onnx` package. No layer of the
OpenEmbedded core set (openembedded-core, meta-openembedded) provides a
native `onnx` module, and building the real one needs protobuf, nanobind and
a C++ build of onnx itself. The converter only *writes* a model, which is
plain protobuf, so the meta-pocket-studio layer runs it at build time against
this pure-Python stand-in (numpy is its only dependency).

Scope: TensorProto/ModelProto/... messages, helper.make_node, make_attribute,
make_graph, make_tensor_value_info, make_model, make_opsetid,
numpy_helper.from_array, checker.check_model (a structural subset of the real
checker) and save. scripts/check-onnx-lite.py in the layer checks that the
model.onnx it writes is byte-identical to the one the real package writes.
"""
from __future__ import annotations

import os

from onnx._proto import BYTES, FLOAT, INT, STRING, Field, Message

__version__ = "0.0.0+onnx-lite"
IR_VERSION = 8


class OperatorSetIdProto(Message):
    pass


class StringStringEntryProto(Message):
    pass


class TensorShapeProto(Message):
    class Dimension(Message):
        pass


class TypeProto(Message):
    class Tensor(Message):
        pass


class TensorProto(Message):
    UNDEFINED, FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64 = range(8)
    STRING, BOOL, FLOAT16, DOUBLE, UINT32, UINT64 = range(8, 14)


class AttributeProto(Message):
    UNDEFINED, FLOAT, INT, STRING, TENSOR, GRAPH = range(6)
    FLOATS, INTS, STRINGS, TENSORS, GRAPHS = range(6, 11)


class ValueInfoProto(Message):
    pass


class NodeProto(Message):
    pass


class GraphProto(Message):
    pass


class ModelProto(Message):
    pass


OperatorSetIdProto.FIELDS = (Field(1, "domain", STRING), Field(2, "version", INT))
StringStringEntryProto.FIELDS = (Field(1, "key", STRING), Field(2, "value", STRING))
TensorShapeProto.Dimension.FIELDS = (
    Field(1, "dim_value", INT), Field(2, "dim_param", STRING), Field(3, "denotation", STRING))
TensorShapeProto.FIELDS = (Field(1, "dim", TensorShapeProto.Dimension, repeated=True),)
TypeProto.Tensor.FIELDS = (Field(1, "elem_type", INT), Field(2, "shape", TensorShapeProto))
TypeProto.FIELDS = (Field(1, "tensor_type", TypeProto.Tensor), Field(6, "denotation", STRING))
TensorProto.FIELDS = (
    Field(1, "dims", INT, repeated=True),
    Field(2, "data_type", INT),
    Field(4, "float_data", FLOAT, repeated=True, packed=True),
    Field(5, "int32_data", INT, repeated=True, packed=True),
    Field(6, "string_data", BYTES, repeated=True),
    Field(7, "int64_data", INT, repeated=True, packed=True),
    Field(8, "name", STRING),
    Field(9, "raw_data", BYTES),
    Field(12, "doc_string", STRING),
)
AttributeProto.FIELDS = (
    Field(1, "name", STRING),
    Field(2, "f", FLOAT),
    Field(3, "i", INT),
    Field(4, "s", BYTES),
    Field(5, "t", TensorProto),
    Field(7, "floats", FLOAT, repeated=True),
    Field(8, "ints", INT, repeated=True),
    Field(9, "strings", BYTES, repeated=True),
    Field(10, "tensors", TensorProto, repeated=True),
    Field(13, "doc_string", STRING),
    Field(20, "type", INT),
)
ValueInfoProto.FIELDS = (
    Field(1, "name", STRING), Field(2, "type", TypeProto), Field(3, "doc_string", STRING))
NodeProto.FIELDS = (
    Field(1, "input", STRING, repeated=True),
    Field(2, "output", STRING, repeated=True),
    Field(3, "name", STRING),
    Field(4, "op_type", STRING),
    Field(5, "attribute", AttributeProto, repeated=True),
    Field(6, "doc_string", STRING),
    Field(7, "domain", STRING),
    Field(8, "overload", STRING),
)
GraphProto.FIELDS = (
    Field(1, "node", NodeProto, repeated=True),
    Field(2, "name", STRING),
    Field(5, "initializer", TensorProto, repeated=True),
    Field(10, "doc_string", STRING),
    Field(11, "input", ValueInfoProto, repeated=True),
    Field(12, "output", ValueInfoProto, repeated=True),
    Field(13, "value_info", ValueInfoProto, repeated=True),
)
ModelProto.FIELDS = (
    Field(1, "ir_version", INT),
    Field(2, "producer_name", STRING),
    Field(3, "producer_version", STRING),
    Field(4, "domain", STRING),
    Field(5, "model_version", INT),
    Field(6, "doc_string", STRING),
    Field(7, "graph", GraphProto),
    Field(8, "opset_import", OperatorSetIdProto, repeated=True),
    Field(14, "metadata_props", StringStringEntryProto, repeated=True),
)

MAXIMUM_PROTOBUF = 2**31 - 1


def save(proto: ModelProto, f) -> None:
    """Writes the model as binary protobuf to a path or a binary file object."""
    data = proto.SerializeToString()
    if len(data) > MAXIMUM_PROTOBUF:
        raise ValueError("The proto size is larger than the 2 GB limit.")
    if hasattr(f, "write"):
        f.write(data)
        return
    with open(os.fspath(f), "wb") as out:
        out.write(data)


save_model = save

from onnx import checker, helper, numpy_helper  # noqa: E402 - they import the classes above

__all__ = [
    "AttributeProto", "GraphProto", "IR_VERSION", "ModelProto", "NodeProto", "OperatorSetIdProto",
    "StringStringEntryProto", "TensorProto", "TensorShapeProto", "TypeProto", "ValueInfoProto",
    "checker", "helper", "numpy_helper", "save", "save_model",
]
