"""Local Triton runtime: the real `tritonserver` from the nvidia-pytriton wheel, with a project-owned backend folder."""
