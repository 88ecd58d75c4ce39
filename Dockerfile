# syntax=docker/dockerfile:1
# runner-scaler container image: ghcr.io/runner-scaler/runner-scaler
#
#   docker build -t ghcr.io/runner-scaler/runner-scaler:0.1.0 .
#
# Runs as uid/gid 65532 (non-root) and works with a read-only root file
# system: the only writable path it needs is /tmp (the Helm chart mounts an
# emptyDir there). All providers are included: kubernetes (Python client),
# docker (Engine API over HTTP), libvirt (libvirt-python; qemu+ssh needs ssh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libvirt-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler ./scaler
COPY providers ./providers
RUN python -m venv /opt/runner-scaler \
 && /opt/runner-scaler/bin/pip install --upgrade pip \
 && /opt/runner-scaler/bin/pip install ".[all]" \
 && /opt/runner-scaler/bin/python -m compileall -q /opt/runner-scaler

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="runner-scaler" \
      org.opencontainers.image.description="Autoscaler for ephemeral self-hosted CI runners (Gitea, Forgejo, GitHub)" \
      org.opencontainers.image.source="https://github.com/runner-scaler/runner-scaler" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt0 openssh-client ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/runner-scaler /opt/runner-scaler
ENV PATH=/opt/runner-scaler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "runner-scaler"]
CMD ["serve", "--config", "/etc/runner-scaler/config.yaml"]
