"""Training the shipped panoptic model (PyTorch, the optional `[train]` extra).

Nothing here is imported by the node. Modules below import torch at the top, so import them
only after `perception.core.errors.require("torch", ...)` has checked it is installed. They
import only numpy, OpenCV, torch, onnx and onnxruntime (no ZeroMQ/msgpack/MCAP), so they
run on a bare GPU machine.
"""
