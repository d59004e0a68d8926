# syntax=docker/dockerfile:1
# One image for every role: `docker run IMAGE <command>` with command run, tempo-source,
# ingest, recompute, api, inspect, ... (see `tempo-anomaly --help`).

# --- build: dependencies into a virtualenv (all of them ship manylinux wheels) ---------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install -r requirements.txt

# --- runtime: the venv and the source, no build tools, non-root ------------------------
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TLA_API_HOST=0.0.0.0 \
    TLA_METRICS_HOST=0.0.0.0 \
    TLA_METRICS_PORT=9464 \
    TLA_STATE_DIR=/var/lib/tempo-anomaly
RUN groupadd --system --gid 10001 tla \
 && useradd --system --uid 10001 --gid tla --home-dir /app --shell /usr/sbin/nologin tla \
 && mkdir -p /var/lib/tempo-anomaly && chown tla:tla /var/lib/tempo-anomaly
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The source runs from /app (PYTHONPATH): the API serves schemas/openapi.yaml next to it.
COPY pipeline/ /app/pipeline/
COPY services/ /app/services/
COPY schemas/ /app/schemas/
RUN printf '#!/bin/sh\nexec python -m services.cli "$@"\n' > /usr/local/bin/tempo-anomaly \
 && chmod 0755 /usr/local/bin/tempo-anomaly
USER tla
EXPOSE 8080 9464
# /healthz on the metrics listener (every role) or the API port when it is turned off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('TLA_METRICS_PORT', '0'); port = port if port != '0' else os.environ.get('TLA_API_PORT', '8080'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["tempo-anomaly"]
CMD ["--help"]
