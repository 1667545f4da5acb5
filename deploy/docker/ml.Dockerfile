# RealRAG retriever (open_clip + Qdrant client) and GPU worker (Celery + diffusers): one
# Dockerfile, final targets that share every layer but their own code.
#
#   docker build -f deploy/docker/ml.Dockerfile --target retriever     -t realrag/retriever:0.1.0 .
#   docker build -f deploy/docker/ml.Dockerfile --target retriever-cpu -t realrag/retriever:0.1.0-cpu .
#   docker build -f deploy/docker/ml.Dockerfile --target worker        -t realrag/worker:0.1.0 .
#   docker build -f deploy/docker/ml.Dockerfile --target ops           -t realrag/ops:0.1.0 .
#
# Each image copies only the packages its process imports (deploy/validate.py checks it):
#   retriever      services/ + retriever_service/ (+ its open_clip configs)  python -m retriever_service
#   retriever-cpu  the same on torch's CPU wheels, no CUDA libraries (Kubernetes CPU pool, CPU boxes)
#   worker         services/ + generator_service/                            python -m generator_service worker
#   ops            all four packages, realrag/ (the composition root) too    realrag index|train-retriever|ingest|eval ...
# The services never import realrag/, so the retriever and worker images do not carry it (nor its
# 19 MB of synthetic-world assets). One-off jobs that need the `realrag` command run the ops image,
# which adds only a code layer on top of the same dependency layers.
#
# Base image: plain python slim, not nvidia/cuda. The torch wheel from PyPI is the CUDA build and
# brings its own CUDA user-space libraries as nvidia-* wheels (cuBLAS, cuDNN, NCCL, the CUDA
# runtime); a CUDA runtime base would add a second, possibly different, copy of the same libraries
# (several GB). Only the kernel driver comes from the host: the NVIDIA container toolkit (Docker)
# or the device plugin (Kubernetes) mounts it in when a GPU is requested. The host driver must
# support the CUDA version of the torch wheel (see docs/deploy.md). The same image runs on CPU.
# No NVIDIA_VISIBLE_DEVICES here: whoever grants the GPU sets it (the device plugin in Kubernetes,
# the compose GPU reservation). Baked in as `all`, a container that was granted no GPU would still
# see every GPU of its host wherever nvidia is the default container runtime.
#
# retriever-cpu: the retriever on CPU needs none of the CUDA libraries (about 4.7 GB installed:
# the nvidia-* wheels 3.2 GB, triton 0.9 GB, libtorch_cuda 0.5 GB). Its venv (stage build-cpu)
# installs torch and torchvision from PyTorch's CPU wheel index (torch==2.14.1+cpu: the local
# version satisfies the ==2.14.1 pins of constraints.txt), then everything else as usual; the
# build fails if a CUDA build of torch, triton, or an nvidia-* or cuda-* wheel got in.
#
# The dependency set is exactly the one the tests install: `pip install -c constraints.txt ".[ml]"`,
# from the requirement lists of pyproject.toml (not `pip install ".[ml]"`: the realrag distribution
# would put all four packages into every image). The code goes on the venv's path through a .pth file.
# Pin the base digest for reproducible rebuilds: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build inputs: an empty virtual environment under /opt/venv and the pins -------------------
FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY deploy/docker/requirements_from_pyproject.py /tmp/requirements_from_pyproject.py

# ---- build: the CUDA venv (PyPI's torch wheel and its nvidia-* wheels) --------------------------
FROM build-base AS build
# Dependencies (torch and the nvidia-* wheels: the big, rarely changing layer), then the .pth file
# that puts /opt/realrag/app (filled by each final target) on the path.
RUN python /tmp/requirements_from_pyproject.py pyproject.toml ml > /tmp/requirements.txt \
 && pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt \
 && pip check \
 && purelib="$(python -c "import sysconfig; print(sysconfig.get_path('purelib'))")" \
 && echo /opt/realrag/app > "$purelib/realrag-app.pth"

# ---- build-cpu: the same venv on torch's CPU wheels (no CUDA libraries) -------------------------
FROM build-base AS build-cpu
# A mirror of the index may be given: --build-arg TORCH_CPU_INDEX=https://mirror.example/whl/cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN python /tmp/requirements_from_pyproject.py pyproject.toml ml > /tmp/requirements.txt \
 && pip install --prefer-binary --no-deps --index-url "$TORCH_CPU_INDEX" -c constraints.txt torch torchvision \
 && pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt \
 && pip check \
 && python -c "import sys, torch; sys.exit(f'torch {torch.__version__} is a CUDA build' if torch.version.cuda else 0)" \
 && ! pip list 2>/dev/null | grep -iE '^(nvidia-|cuda-|triton )' \
 && purelib="$(python -c "import sysconfig; print(sysconfig.get_path('purelib'))")" \
 && echo /opt/realrag/app > "$purelib/realrag-app.pth"

# ---- shared runtime: user, directories, environment; no venv, no code ---------------------------
FROM ${PYTHON_IMAGE} AS ml-base
ARG REALRAG_VERSION=0.1.0
LABEL org.opencontainers.image.version="${REALRAG_VERSION}"
# /models is the model cache (Hugging Face hub, open_clip, torch hub): mount a volume there so that
# weights are downloaded once per volume, not once per container start.
# HF_HUB_OFFLINE=1: never wait on a model hub unless the deployment says so (compose and the
# Kubernetes ConfigMap set it explicitly; 0 lets the first start download into /models).
# NVIDIA_DRIVER_CAPABILITIES only names the driver libraries to mount once a GPU is granted.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models/huggingface \
    TORCH_HOME=/models/torch \
    HF_HUB_OFFLINE=1 \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    REALRAG_ENVIRONMENT=production \
    REALRAG_DATA_DIR=/data \
    REALRAG_ARTIFACT_DIR=/artifacts
RUN groupadd --system --gid 10001 realrag \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/realrag --create-home \
            --shell /usr/sbin/nologin realrag \
 && mkdir -p /data /artifacts /models/huggingface /models/torch /opt/realrag/app \
 && chown -R 10001:10001 /data /artifacts /models
COPY deploy/docker/http_probe.py /opt/realrag/http_probe.py
WORKDIR /home/realrag
VOLUME ["/models"]

# ---- the two runtimes: the shared base plus one venv --------------------------------------------
FROM ml-base AS ml-runtime
COPY --from=build /opt/venv /opt/venv

FROM ml-base AS ml-runtime-cpu
COPY --from=build-cpu /opt/venv /opt/venv

# ---- ops: the `realrag` command for one-off jobs (index, train-retriever, ingest --direct, eval) --
FROM ml-runtime AS ops
LABEL org.opencontainers.image.title="realrag-ops" \
      org.opencontainers.image.description="RealRAG one-off jobs: the realrag command with every package"
COPY services /opt/realrag/app/services
COPY retriever_service /opt/realrag/app/retriever_service
COPY generator_service /opt/realrag/app/generator_service
COPY realrag /opt/realrag/app/realrag
COPY retriever_service/configs/ /opt/realrag/configs/
RUN python -m compileall -q /opt/realrag/app \
 && printf '#!/bin/sh\nexec python -m realrag.cli "$@"\n' > /opt/venv/bin/realrag \
 && chmod 755 /opt/venv/bin/realrag
USER 10001:10001
# No server here, so no health check: the job's exit status is its result.
HEALTHCHECK NONE
ENTRYPOINT ["realrag"]
CMD ["--help"]

# ---- retriever --------------------------------------------------------------------------------
FROM ml-runtime AS retriever
LABEL org.opencontainers.image.title="realrag-retriever" \
      org.opencontainers.image.description="RealRAG retriever (open_clip encoder + Qdrant)"
COPY services /opt/realrag/app/services
COPY retriever_service /opt/realrag/app/retriever_service
# Tiny open_clip configs (REALRAG_ENCODER_MODEL=/opt/realrag/configs/tiny-clip.json): the CPU demo.
COPY retriever_service/configs/ /opt/realrag/configs/
RUN python -m compileall -q /opt/realrag/app
USER 10001:10001
ENV REALRAG_RETRIEVER_HOST=0.0.0.0 \
    REALRAG_RETRIEVER_PORT=8001
EXPOSE 8001
# Start period covers downloading and loading the CLIP weights on first start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "/opt/realrag/http_probe.py", "--port-env", "REALRAG_RETRIEVER_PORT", "--default-port", "8001", "/healthz"]
CMD ["python", "-m", "retriever_service"]

# ---- retriever-cpu: the same retriever on the CPU venv (no CUDA libraries) -----------------------
FROM ml-runtime-cpu AS retriever-cpu
LABEL org.opencontainers.image.title="realrag-retriever" \
      org.opencontainers.image.description="RealRAG retriever (open_clip encoder + Qdrant), CPU build without CUDA"
COPY services /opt/realrag/app/services
COPY retriever_service /opt/realrag/app/retriever_service
# Tiny open_clip configs (REALRAG_ENCODER_MODEL=/opt/realrag/configs/tiny-clip.json): the CPU demo.
COPY retriever_service/configs/ /opt/realrag/configs/
RUN python -m compileall -q /opt/realrag/app
USER 10001:10001
ENV REALRAG_RETRIEVER_HOST=0.0.0.0 \
    REALRAG_RETRIEVER_PORT=8001
EXPOSE 8001
# Start period covers downloading and loading the CLIP weights on first start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "/opt/realrag/http_probe.py", "--port-env", "REALRAG_RETRIEVER_PORT", "--default-port", "8001", "/healthz"]
CMD ["python", "-m", "retriever_service"]

# ---- worker (last stage: the default target) --------------------------------------------------
FROM ml-runtime AS worker
LABEL org.opencontainers.image.title="realrag-worker" \
      org.opencontainers.image.description="RealRAG GPU worker (Celery prefork -c 1 + diffusers)"
COPY services /opt/realrag/app/services
COPY generator_service /opt/realrag/app/generator_service
RUN python -m compileall -q /opt/realrag/app
USER 10001:10001
# The heartbeat lives in the container, never on a shared volume: two workers must not share it.
ENV REALRAG_HEARTBEAT_FILE=/tmp/realrag-worker-heartbeat \
    REALRAG_WORKER_PRELOAD=true
# Liveness = the consumption heartbeat is fresh (touched on every task and denoising step), not
# `celery inspect ping`. The start period covers model download + load.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
  CMD ["python", "-m", "generator_service", "probe", "--liveness", "--max-age-s", "180"]
CMD ["python", "-m", "generator_service", "worker"]
