"""The only module that touches the TFLite interpreter: one flatbuffer loaded on LiteRT, run a batch at a time.

The recognition model (`edgeface.model`) and the face-quality gate (`edgeface.gate`) each hold a `Network`.
LiteRT (`ai_edge_litert`) runs it; `tflite_runtime` is a fallback where LiteRT has no wheel. Quantization of inputs
and dequantization of outputs happen here and nowhere else, with the scale and zero point read from the network
itself. An interpreter is not thread-safe: a Network belongs to the one thread (or worker process) that built it,
and `threads` are LiteRT's own threads inside each call.
"""

from __future__ import annotations

import numpy as np


class ModelError(RuntimeError):
    """A model that cannot be loaded or does not match its own metadata."""


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("no TFLite runtime: install it with `pip install ai-edge-litert`") from None
    return Interpreter


class Network:
    """A TFLite flatbuffer on the interpreter, with its one input and one output.

    content: the flatbuffer's bytes (what follows them, such as edgeface's appended archive, is ignored).
    name: how errors name it ("faces.tflite", "faces.tflite's gate").
    """

    def __init__(self, content: bytes, name: str, threads: int | None = None) -> None:
        try:
            self._interpreter = _interpreter_class()(model_content=content, num_threads=threads)
            self._interpreter.allocate_tensors()
        except ValueError as error:
            raise ModelError(f"{name} is not a loadable TFLite model (damaged or cut short?): {error}") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{name} has {len(inputs)} inputs and {len(outputs)} outputs, not one of each")
        self.input, self.output = inputs[0], outputs[0]
        self._batch = 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch."""
        return tuple(int(n) for n in self.input["shape"][1:])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one output, without the batch."""
        return tuple(int(n) for n in self.output["shape"][1:])

    def op_counts(self) -> dict[str, int]:
        """How many times each operator occurs, by name."""
        ops: dict[str, int] = {}
        for op in self._interpreter._get_ops_details():  # no public op listing in LiteRT 2.x
            ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
        return ops

    def run(self, values: np.ndarray) -> np.ndarray:
        """The network's outputs for a batch, in one interpreter call (the input is resized to the batch).

        Args:
            values: float32 (n, *input_shape), in the float scale the network was trained on.
        Returns:
            float32 (n, *output_shape), dequantized.
        """
        if len(values) != self._batch:
            self._interpreter.resize_tensor_input(self.input["index"], [len(values), *values.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = len(values)
        self._interpreter.set_tensor(self.input["index"], _quantize(values, self.input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self.output["index"]), self.output)


def _quantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """Float inputs in the tensor's dtype, using its own scale and zero point."""
    dtype = tensor["dtype"]
    scale, zero_point = tensor["quantization"]
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    limits = np.iinfo(dtype)
    quantized = np.round(values / scale) + zero_point
    return np.clip(quantized, limits.min, limits.max).astype(dtype)


def _dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """Outputs as float32; integers are widened before subtracting the zero point."""
    if not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32)
    scale, zero_point = tensor["quantization"]
    return ((values.astype(np.int32) - zero_point) * scale).astype(np.float32)
