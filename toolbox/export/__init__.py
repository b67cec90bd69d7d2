"""The export step: Paddle inference model, ONNX and RK3588 RKNN, each verified (see api.py)."""
