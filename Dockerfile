# syntax=docker/dockerfile:1
# Two stages: the first builds the gateway's wheel and collects the wheels of its dependencies;
# the second installs them from that directory alone (no index, no compiler) for a non-root user.
# tests/deploy lints this file with hadolint and runs its CMD and HEALTHCHECK outside Docker.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gateway
# The wheels are mounted, not copied: they never become a layer of the final image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/points_gateway-*.whl
WORKDIR /srv/points-gateway
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["points-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
