"""Inference on the served model and what explains it: the Triton client, Grad-CAM on the PyTorch twin (kept in
step with the served checkpoint), and the overlay video."""
