# RealRAG gateway: FastAPI + the Celery client. Core dependencies only: no torch, no CUDA.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t realrag/gateway:0.1.0 .
#
# Build context = repository root (see .dockerignore: only the package sources, pyproject.toml,
# constraints.txt and README.md are sent). The dependency set is exactly the one the tests install:
# `pip install -c constraints.txt .` (no extras).
#
# The base is pinned to a full patch version; pin the digest as well for reproducible rebuilds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> ...
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
# Dependencies first, in their own layer, pinned by the same constraints file as the tests.
RUN python /tmp/requirements_from_pyproject.py pyproject.toml > /tmp/requirements.txt \
 && pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt
COPY services ./services
COPY retriever_service ./retriever_service
COPY generator_service ./generator_service
RUN pip install -c constraints.txt . \
 && pip check \
 && ! pip show torch >/dev/null 2>&1

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
COPY deploy/docker/http_probe.py /opt/realrag/http_probe.py
USER 10001:10001
WORKDIR /home/realrag
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/realrag/http_probe.py", "--port-env", "REALRAG_GATEWAY_PORT", "--default-port", "8000", "/healthz"]
ENTRYPOINT ["realrag"]
CMD ["gateway"]
