# syntax=docker/dockerfile:1
# One image for every role: `docker run IMAGE <command>` with command run, tempo-source,
# ingest, recompute, api, inspect, ... (see `tempo-anomaly --help`).

# --- build: the locked dependencies, then the project's wheel, into a virtualenv ---------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the committed lock alone (exact versions, hashes checked), so a
# code change reuses this layer and an upstream release cannot change the image.
COPY requirements/run.lock requirements/run.lock
RUN pip install --require-hashes -r requirements/run.lock
# The product as a wheel, built with the locked setuptools: package data included.
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY services/ services/
COPY schemas/ schemas/
RUN pip wheel --no-deps --no-build-isolation -w /dist . \
 && pip install --no-deps /dist/*.whl

# --- runtime: the venv alone, no build tools, non-root ----------------------------------
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TLA_API_HOST=0.0.0.0 \
    TLA_OTLP_HOST=0.0.0.0 \
    TLA_METRICS_HOST=0.0.0.0 \
    TLA_METRICS_PORT=9464 \
    TLA_STATE_DIR=/var/lib/tempo-anomaly
RUN groupadd --system --gid 10001 tla \
 && useradd --system --uid 10001 --gid tla --home-dir /app --shell /usr/sbin/nologin tla \
 && mkdir -p /var/lib/tempo-anomaly && chown tla:tla /var/lib/tempo-anomaly
# The venv holds everything: the product is an installed package, no source tree beside it.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER tla
EXPOSE 8080 9464 4318
# /healthz on the metrics listener (every role) or the API port when it is turned off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('TLA_METRICS_PORT', '0'); port = port if port != '0' else os.environ.get('TLA_API_PORT', '8080'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["tempo-anomaly"]
CMD ["--help"]
