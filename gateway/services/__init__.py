"""The work behind the routes: download, Triton, Grad-CAM, render, storage, metrics, the predict pipeline."""
