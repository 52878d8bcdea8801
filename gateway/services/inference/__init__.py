"""Inference on the served model and what explains it: the Triton client and Grad-CAM on the PyTorch twin (kept in
step with the served checkpoint). The overlay video is gateway/services/overlay/."""
