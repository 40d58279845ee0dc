# syntax=docker/dockerfile:1
#
# kafka-http-gateway container image.
#
#   docker build -t kafka-http-gateway:dev .
#   docker run --rm -p 8080:8080 -e GATEWAY_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 kafka-http-gateway:dev
#
# Two stages: the builder turns pyproject.toml + gateway/ into a wheel and installs it with its
# dependencies into a virtualenv at /opt/venv; the runtime stage copies only that virtualenv onto a
# fresh python:3.11-slim. Every dependency (confluent-kafka bundles librdkafka) ships manylinux wheels
# for amd64 and arm64; the gateway's own Cython modules are compiled (setup.py; the producer's hot path
# links to the librdkafka inside confluent-kafka's wheel and finds it there through its rpath), so the
# builder has a C compiler, and nothing but /opt/venv crosses into the final image. Both stages use the
# same base, so the virtualenv's interpreter path (/usr/local/bin/python3.11) exists in the final image.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# gcc for the Cython modules (builder only).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Only what the wheel is made of: the package and its metadata (pyproject names README.md as readme).
COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway

# Build the wheel, then install it with the tracing extra and their pinned dependencies (tracing stays
# off until GATEWAY_TRACING__ENABLED=true); pip compiles the .pyc files here, so the read-only runtime
# never needs to write them. The import is a smoke test that every runtime dependency arrived; -P keeps
# ./gateway off sys.path, so it imports the installed copy.
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip install "$(ls /tmp/wheels/*.whl)[tracing]" \
    && python -P -c "import gateway.app, gateway.__main__, gateway._frames, gateway._records, gateway.kafka._rdkafka, opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http"


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="kafka-http-gateway" \
      org.opencontainers.image.description="HTTP (REST + server-sent events) gateway to Apache Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway

COPY --from=builder /opt/venv /opt/venv

# Listen on every interface inside the container; settings.py defaults to loopback for local runs.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080

USER 10001:10001
EXPOSE 8080

# Liveness only (the process answers); readiness needs Kafka and is the orchestrator's business.
# Kubernetes ignores HEALTHCHECK and uses the probes in k8s/base/gateway/deployment.yaml.
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8080'), timeout=2)"]

# uvicorn turns SIGTERM into a graceful drain bounded by GATEWAY_SHUTDOWN_GRACE_S.
STOPSIGNAL SIGTERM
ENTRYPOINT ["kafka-gateway"]
