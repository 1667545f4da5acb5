# RealRAG retriever (open_clip + Qdrant client) and GPU worker (Celery + diffusers): one
# Dockerfile, two final targets that share every layer but the last.
#
#   docker build -f deploy/docker/ml.Dockerfile --target retriever -t realrag/retriever:0.1.0 .
#   docker build -f deploy/docker/ml.Dockerfile --target worker    -t realrag/worker:0.1.0 .
#
# Base image: plain python slim, not nvidia/cuda. The torch wheel from PyPI is the CUDA build and
# brings its own CUDA user-space libraries as nvidia-* wheels (cuBLAS, cuDNN, NCCL, the CUDA
# runtime); a CUDA runtime base would add a second, possibly different, copy of the same libraries
# (several GB). Only the kernel driver comes from the host: the NVIDIA container toolkit (Docker)
# or the device plugin (Kubernetes) mounts it in when a GPU is requested. The host driver must
# support the CUDA version of the torch wheel (see docs/deploy.md). The same image runs on CPU.
#
# The dependency set is exactly the one the tests install: `pip install -c constraints.txt ".[ml]"`.
# Pin the base digest for reproducible rebuilds: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtual environment under /opt/venv --------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY deploy/docker/requirements_from_pyproject.py /tmp/requirements_from_pyproject.py
# Dependencies first (torch and the nvidia-* wheels: the big, rarely changing layer).
RUN python /tmp/requirements_from_pyproject.py pyproject.toml ml > /tmp/requirements.txt \
 && pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt
COPY services ./services
COPY retriever_service ./retriever_service
COPY generator_service ./generator_service
RUN pip install -c constraints.txt ".[ml]" \
 && pip check

# ---- shared runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS ml-runtime
ARG REALRAG_VERSION=0.1.0
LABEL org.opencontainers.image.version="${REALRAG_VERSION}"
# /models is the model cache (Hugging Face hub, open_clip, torch hub): mount a volume there so that
# weights are downloaded once per volume, not once per container start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models/huggingface \
    TORCH_HOME=/models/torch \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    REALRAG_ENVIRONMENT=production \
    REALRAG_DATA_DIR=/data \
    REALRAG_ARTIFACT_DIR=/artifacts
RUN groupadd --system --gid 10001 realrag \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/realrag --create-home \
            --shell /usr/sbin/nologin realrag \
 && mkdir -p /data /artifacts /models/huggingface /models/torch /opt/realrag \
 && chown -R 10001:10001 /data /artifacts /models
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/http_probe.py /opt/realrag/http_probe.py
# Tiny open_clip configs (REALRAG_ENCODER_MODEL=/opt/realrag/configs/tiny-clip.json): the CPU demo.
COPY retriever_service/configs/ /opt/realrag/configs/
USER 10001:10001
WORKDIR /home/realrag
ENTRYPOINT ["realrag"]

# ---- retriever --------------------------------------------------------------------------------
FROM ml-runtime AS retriever
LABEL org.opencontainers.image.title="realrag-retriever" \
      org.opencontainers.image.description="RealRAG retriever (open_clip encoder + Qdrant)"
ENV REALRAG_RETRIEVER_HOST=0.0.0.0 \
    REALRAG_RETRIEVER_PORT=8001
EXPOSE 8001
VOLUME ["/models"]
# Start period covers downloading and loading the CLIP weights on first start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "/opt/realrag/http_probe.py", "--port-env", "REALRAG_RETRIEVER_PORT", "--default-port", "8001", "/healthz"]
CMD ["retriever"]

# ---- worker (last stage: the default target) --------------------------------------------------
FROM ml-runtime AS worker
LABEL org.opencontainers.image.title="realrag-worker" \
      org.opencontainers.image.description="RealRAG GPU worker (Celery prefork -c 1 + diffusers)"
# The heartbeat lives in the container, never on a shared volume: two workers must not share it.
ENV REALRAG_HEARTBEAT_FILE=/tmp/realrag-worker-heartbeat \
    REALRAG_WORKER_PRELOAD=true
VOLUME ["/models"]
# Liveness = the consumption heartbeat is fresh (touched on every task and denoising step), not
# `celery inspect ping`. The start period covers model download + load.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
  CMD ["realrag", "probe", "worker", "--liveness", "--max-age-s", "180"]
CMD ["worker"]
