"""onnx.numpy_helper subset: numpy array -> TensorProto with little-endian raw_data."""
from __future__ import annotations

import numpy as np

from onnx import TensorProto

_DTYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint16): TensorProto.UINT16,
    np.dtype(np.int16): TensorProto.INT16,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.uint32): TensorProto.UINT32,
    np.dtype(np.uint64): TensorProto.UINT64,
}


def from_array(array: np.ndarray, /, name: str | None = None) -> TensorProto:
    tensor = TensorProto()
    tensor.dims.extend(int(d) for d in array.shape)
    if name:
        tensor.name = name
    native = array.dtype.newbyteorder("=")
    if native not in _DTYPES:
        raise NotImplementedError(f"onnx-lite: dtype {array.dtype} is not supported")
    tensor.raw_data = np.ascontiguousarray(array).astype(native.newbyteorder("<"), copy=False).tobytes()
    tensor.data_type = _DTYPES[native]
    return tensor


def to_array(tensor: TensorProto) -> np.ndarray:
    for dtype, code in _DTYPES.items():
        if code == tensor.data_type:
            data = np.frombuffer(tensor.raw_data, dtype=dtype.newbyteorder("<"))
            return data.astype(dtype).reshape(tuple(tensor.dims))
    raise NotImplementedError(f"onnx-lite: data_type {tensor.data_type} is not supported")
