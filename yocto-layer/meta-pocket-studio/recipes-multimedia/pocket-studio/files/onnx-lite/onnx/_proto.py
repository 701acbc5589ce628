"""A small proto2 message model and wire-format encoder for the ONNX messages.

Only what models/export/fetch_upscalers.py builds is described here. The
field numbers, types and packing follow onnx.proto (proto2 syntax, so repeated
scalars are unpacked unless the .proto says [packed = true]); fields are
written in field-number order, as protobuf's own serializers do, so the bytes
match what the real `onnx` package writes for the same calls.
"""
from __future__ import annotations

import copy
import struct

# Field kinds.
INT = "int"        # int32, int64 and enums: varint, negative values as 64-bit two's complement
FLOAT = "float"    # 32-bit float, wire type 5
STRING = "string"  # str, UTF-8 encoded, wire type 2
BYTES = "bytes"    # bytes, wire type 2


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


class Field:
    def __init__(self, number: int, name: str, kind, repeated: bool = False, packed: bool = False):
        self.number, self.name, self.kind = number, name, kind
        self.repeated, self.packed = repeated, packed

    @property
    def is_message(self) -> bool:
        return isinstance(self.kind, type)

    def default(self):
        if self.kind == INT:
            return 0
        if self.kind == FLOAT:
            return 0.0
        if self.kind == STRING:
            return ""
        if self.kind == BYTES:
            return b""
        return None

    def encode_scalar(self, value) -> bytes:
        if self.kind == INT:
            return _key(self.number, 0) + _varint(int(value))
        if self.kind == FLOAT:
            return _key(self.number, 5) + struct.pack("<f", float(value))
        if self.kind == STRING:
            data = value.encode("utf-8")
        else:
            data = bytes(value)
        return _key(self.number, 2) + _varint(len(data)) + data


class Repeated(list):
    """A repeated field: a list that marks its owner as set when it is changed."""

    def __init__(self, owner: "Message", field: Field):
        super().__init__()
        self._owner, self._field = owner, field

    def _convert(self, value):
        if self._field.is_message:
            if not isinstance(value, self._field.kind):
                raise TypeError(f"{self._field.name}: expected {self._field.kind.__name__}")
            return copy.deepcopy(value)
        return value

    def append(self, value) -> None:
        super().append(self._convert(value))
        self._owner._touch()

    def extend(self, values) -> None:
        super().extend(self._convert(v) for v in values)
        self._owner._touch()

    def add(self) -> "Message":
        child = self._field.kind()
        super().append(child)
        self._owner._touch()
        return child

    def __setitem__(self, index, value) -> None:
        super().__setitem__(index, self._convert(value))
        self._owner._touch()

    def __deepcopy__(self, memo):
        raise TypeError("copy the owning message instead")


class Message:
    FIELDS: tuple = ()

    def __init__(self, **kwargs):
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_parent", None)
        for name, value in kwargs.items():
            setattr(self, name, value)

    @classmethod
    def _field(cls, name: str) -> Field:
        for f in cls.FIELDS:
            if f.name == name:
                return f
        raise AttributeError(f"{cls.__name__} has no field {name!r}")

    def _touch(self) -> None:
        node = self
        while node is not None and not node._values.get("__present__"):
            node._values["__present__"] = True
            node = node._parent

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        f = type(self)._field(name)
        values = self._values
        if name in values:
            return values[name]
        if f.repeated:
            values[name] = Repeated(self, f)
            return values[name]
        if f.is_message:
            child = f.kind()
            object.__setattr__(child, "_parent", self)
            values[name] = child
            return child
        return f.default()

    def __setattr__(self, name: str, value) -> None:
        f = type(self)._field(name)
        if f.repeated or f.is_message:
            raise AttributeError(f"assignment to {name!r} is not allowed; use CopyFrom/extend")
        if f.kind == STRING and not isinstance(value, str):
            raise TypeError(f"{name}: expected str")
        if f.kind == BYTES and not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{name}: expected bytes")
        self._values[name] = value
        self._values.setdefault("__set__", set()).add(name)
        self._touch()

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        f = type(self)._field(name)
        value = self._values.get(name)
        if f.is_message:
            return value is not None and bool(value._values.get("__present__"))
        return name in self._values.get("__set__", ())

    def CopyFrom(self, other: "Message") -> None:  # noqa: N802 - protobuf's name
        if type(other) is not type(self):
            raise TypeError(f"CopyFrom: expected {type(self).__name__}")
        parent = self._parent
        object.__setattr__(self, "_values", {})
        for f in self.FIELDS:
            value = other._values.get(f.name)
            if value is None:
                continue
            if f.repeated:
                getattr(self, f.name).extend(value)
            elif f.is_message:
                if value._values.get("__present__"):
                    getattr(self, f.name).CopyFrom(value)
            elif f.name in other._values.get("__set__", ()):
                setattr(self, f.name, value)
        object.__setattr__(self, "_parent", parent)
        self._touch()

    def __deepcopy__(self, memo):
        clone = type(self)()
        clone.CopyFrom(self)
        object.__setattr__(clone, "_parent", None)
        return clone

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        out = bytearray()
        for f in sorted(self.FIELDS, key=lambda x: x.number):
            value = self._values.get(f.name)
            if value is None:
                continue
            if f.repeated:
                if f.is_message:
                    for item in value:
                        data = item.SerializeToString()
                        out += _key(f.number, 2) + _varint(len(data)) + data
                elif f.packed:
                    if value:
                        body = b"".join(f.encode_scalar(v)[len(_key(f.number, 0 if f.kind == INT else 5)):]
                                        for v in value)
                        out += _key(f.number, 2) + _varint(len(body)) + body
                else:
                    for item in value:
                        out += f.encode_scalar(item)
            elif f.is_message:
                if value._values.get("__present__"):
                    data = value.SerializeToString()
                    out += _key(f.number, 2) + _varint(len(data)) + data
            elif f.name in self._values.get("__set__", ()):
                out += f.encode_scalar(value)
        return bytes(out)

    def ByteSize(self) -> int:  # noqa: N802 - protobuf's name
        return len(self.SerializeToString())
