# syntax=docker/dockerfile:1
#
# One image for both binaries (`gateway` and `controlplane`): build once, promote the same digest
# from staging to production, pick the binary with the container's command.
#
#   docker build -t ai-gateway:dev .
#   docker run --read-only -v gw-state:/var/lib/ai-gateway ai-gateway:dev run --config /etc/ai-gateway/gateway.yaml
#   docker run --read-only --entrypoint /usr/local/bin/controlplane ai-gateway:dev serve --config /etc/ai-gateway/controlplane.yaml
#
# Base images are pinned by digest (the multi-arch index digest of the named tag), so a build
# never picks up a base it was not reviewed with. Refresh both digests deliberately, see
# "Container image" in README.md.

# ---- builder: the toolchain of rust-toolchain.toml on Debian 12 (same glibc/OpenSSL as runtime)
FROM docker.io/library/rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder
# cmake: Pingora's zlib-ng; pkg-config + libssl-dev: Pingora's OpenSSL backend.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# One locked release build for both binaries (the lockfile is the reviewed dependency set).
RUN cargo build --release --locked -p gateway -p controlplane \
    && mkdir -p /out/bin /out/state \
    && cp target/release/gateway target/release/controlplane /out/bin/ \
    && cp conf/gateway.production.yaml conf/controlplane.production.yaml /out/ \
    && chown 65532:65532 /out/state

# ---- runtime: distroless cc (glibc, libgcc, OpenSSL 3, CA certificates; no shell, no package
# manager), as the non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK by design: the image has no shell or HTTP client to run one, Kubernetes ignores HEALTHCHECK, and the manifests probe /healthz and /readyz on the admin port instead.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ai-gateway" \
      org.opencontainers.image.description="Self-hosted AI gateway: the gateway (Pingora data plane) and controlplane binaries." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/bin/gateway /out/bin/controlplane /usr/local/bin/
COPY --from=builder /out/gateway.production.yaml /out/controlplane.production.yaml /etc/ai-gateway/
# The only place either binary writes (last-known-good snapshot, usage spool, SQLite file). It
# is owned by the runtime user; run with a read-only root filesystem and mount a volume here.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/ai-gateway
WORKDIR /var/lib/ai-gateway
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "--config", "/etc/ai-gateway/gateway.production.yaml"]
