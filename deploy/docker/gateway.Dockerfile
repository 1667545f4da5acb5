# RealRAG gateway: FastAPI + the Celery client. Core dependencies only: no torch, no CUDA.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t realrag/gateway:0.1.0 .
#
# The image holds services/ and nothing else of the repository: no retriever_service,
# generator_service or realrag (the composition root). The gateway imports the floor only, so it
# runs as `python -m services.gateway`. deploy/validate.py checks that nothing else is copied in.
#
# Why not `pip install .`: the realrag distribution packages all four packages (pyproject's
# setuptools find) and its `realrag` console script lives in realrag/. Instead, the core
# dependencies of pyproject.toml are installed with the same constraints file as the tests
# (`pip install -c constraints.txt .` without extras), and services/ goes on the venv's path
# through a .pth file.
#
# Build context = repository root (.dockerignore is an allow-list).
# The base is pinned to a full patch version; pin the digest as well for reproducible rebuilds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> ...
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtual environment under /opt/venv, the code under /opt/realrag/app -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY deploy/docker/requirements_from_pyproject.py /tmp/requirements_from_pyproject.py
# Dependencies first, in their own layer, pinned by the same constraints file as the tests.
# The build fails if torch enters (directly or through a dependency).
RUN python /tmp/requirements_from_pyproject.py pyproject.toml > /tmp/requirements.txt \
 && pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt \
 && pip check \
 && ! pip show torch >/dev/null 2>&1 \
 && purelib="$(python -c "import sysconfig; print(sysconfig.get_path('purelib'))")" \
 && echo /opt/realrag/app > "$purelib/realrag-app.pth"
COPY services /opt/realrag/app/services
# Byte-compile (the root filesystem is read-only at run time) and prove that the gateway imports
# without anything but services/ and the core dependencies.
RUN python -m compileall -q /opt/realrag/app \
 && python -c "import sys, services.gateway.app; \
bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'retriever_service', 'generator_service', 'realrag'}); \
sys.exit(f'the gateway imports {bad}' if bad else 0)"

# ---- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS gateway
ARG REALRAG_VERSION=0.1.0
LABEL org.opencontainers.image.title="realrag-gateway" \
      org.opencontainers.image.version="${REALRAG_VERSION}" \
      org.opencontainers.image.description="RealRAG job API (FastAPI + Celery client)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/cache \
    REALRAG_ENVIRONMENT=production \
    REALRAG_GATEWAY_HOST=0.0.0.0 \
    REALRAG_GATEWAY_PORT=8000 \
    REALRAG_DATA_DIR=/data \
    REALRAG_ARTIFACT_DIR=/artifacts
RUN groupadd --system --gid 10001 realrag \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/realrag --create-home \
            --shell /usr/sbin/nologin realrag \
 && mkdir -p /data /artifacts /opt/realrag \
 && chown 10001:10001 /data /artifacts
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/realrag/app /opt/realrag/app
COPY deploy/docker/http_probe.py /opt/realrag/http_probe.py
USER 10001:10001
WORKDIR /home/realrag
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/realrag/http_probe.py", "--port-env", "REALRAG_GATEWAY_PORT", "--default-port", "8000", "/healthz"]
# Host and port come from REALRAG_GATEWAY_HOST/PORT (or --host/--port).
CMD ["python", "-m", "services.gateway"]
