"""Training side of the product: ONNX export of the Triton models (``python -m export``)."""
