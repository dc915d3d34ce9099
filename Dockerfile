# The LEZ access-decision service as one image: `lez-server` (the default command), `lez-loader`
# (the build and sync jobs) and `lez` (a client for checks from inside the cluster).
# docs/operations.md says how the image is run; deploy/ holds the Kubernetes manifests.
#
#   docker build -t lez-access:0.1.0 .
#
# It runs as a non-root user with a read-only root file system: everything it writes is a
# volume (the store, the audit log, /tmp). Keys, certificates and the clients file are mounted
# read-only under /etc/lez.

FROM python:3.11-slim-bookworm AS build
# gcc and the OpenSSL headers compile the native cores (lez/_hmac.c keying, lez/_lookup.c
# lookup, lez/_enrich.c enrichment, lez/_sort.c the loader's sort)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY lez lez
COPY loader loader
COPY server server
COPY clients clients
COPY div_standin div_standin
RUN python -m venv /opt/lez \
 && /opt/lez/bin/pip install --no-cache-dir ".[server,loader]" \
 && cd / && /opt/lez/bin/python -c "import lez._hmac, lez._lookup, lez._enrich, lez._sort"  # the native cores were built

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="lez-access" \
      org.opencontainers.image.description="Access decisions for Belgian low-emission zones" \
      org.opencontainers.image.licenses="EUPL-1.2"
RUN groupadd --system --gid 10001 lez \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lez \
 && mkdir -p /var/lib/lez/store /var/lib/lez/audit /etc/lez \
 && chown 10001:10001 /var/lib/lez/store /var/lib/lez/audit
COPY --from=build /opt/lez /opt/lez
COPY rules /opt/lez/share/lez/rules
ENV PATH=/opt/lez/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEZ_ADDRESS=0.0.0.0:50051 \
    LEZ_STORE_ROOT=/var/lib/lez/store \
    LEZ_STORE=/var/lib/lez/store \
    LEZ_RULES=/opt/lez/share/lez/rules \
    LEZ_KEY_FILE=/etc/lez/keys/hmac.key \
    LEZ_AUDIT_KEY_FILE=/etc/lez/keys/audit.key \
    LEZ_AUDIT_DIR=/var/lib/lez/audit \
    LEZ_TLS_CERT=/etc/lez/tls/server.pem \
    LEZ_TLS_KEY=/etc/lez/tls/server.key \
    LEZ_TLS_CA=/etc/lez/tls/ca.pem \
    LEZ_CLIENTS_FILE=/etc/lez/clients/clients.toml \
    LEZ_PROBE_ADDRESS=127.0.0.1:50051 \
    LEZ_PROBE_TLS_CA=/etc/lez/tls/ca.pem \
    LEZ_PROBE_TLS_CERT=/etc/lez/probe/probe.pem \
    LEZ_PROBE_TLS_KEY=/etc/lez/probe/probe.key \
    LEZ_PROBE_SERVER_NAME=lez-server
VOLUME ["/var/lib/lez/store", "/var/lib/lez/audit", "/tmp"]
USER 10001:10001
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["lez-server", "health"]
ENTRYPOINT ["lez-server"]
CMD ["serve"]
