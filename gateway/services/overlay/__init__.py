"""The overlay video: the render (face boxes, Grad-CAM heatmaps, verdict banner; H.264) and its read-ahead decoder,
which starts while Triton works."""
