# syntax=docker/dockerfile:1
#
# wasmprobe: the engine and its bundled plugins in one image.
#
#   docker build --build-arg WASMPROBE_REVISION=$(git rev-parse --short=12 HEAD) -t wasmprobe .
#   docker run --rm -p 10464:10464 wasmprobe
#
# The image runs as uid/gid 10001, listens on 0.0.0.0:10464 and reads
# /etc/wasmprobe/probes.toml (deploy/probes.container.toml: probes of the
# container itself only). See docs/operations.md, "Running in a container
# and on Kubernetes". scripts/test-container builds this file's runtime
# stage with podman and runs the image (tests/e2e/container_image.rs).

# ---------------------------------------------------------------------------
# Builder: the plugins (wasm32-wasip2, profile `wasm`) and the engine.
# rust-version in Cargo.toml is 1.95; bookworm matches the runtime's glibc.
FROM rust:1.95-bookworm AS builder

RUN rustup target add wasm32-wasip2

WORKDIR /src
COPY . .

# The context leaves out .git: the commit for wasmprobe_build_info's
# `revision` label comes in as a build argument ("unknown" without it).
ARG WASMPROBE_REVISION=unknown
ENV WASMPROBE_REVISION=${WASMPROBE_REVISION}

# `cargo fetch --locked` fails if Cargo.lock is not up to date, and fetches
# every crate of the workspace (host and wasm targets); the builds then run
# offline, so nothing but the locked versions can go into the image.
# The cache mounts (BuildKit) only speed up rebuilds; the outputs are copied
# out of the cached target directory within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    set -eux; \
    cargo fetch --locked; \
    export CARGO_NET_OFFLINE=true; \
    scripts/build-plugins; \
    cargo build --release -p wasmprobe --locked; \
    install -D -m 0755 target/release/wasmprobe /out/bin/wasmprobe; \
    install -d /out/plugins; \
    install -m 0644 dist/plugins/*.wasm /out/plugins/

# ---------------------------------------------------------------------------
# Runtime: Debian slim, the binary, the plugins, a default config.
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="wasmprobe" \
      org.opencontainers.image.description="A probe engine whose probes are sandboxed WebAssembly plugins" \
      org.opencontainers.image.licenses="Apache-2.0"

# ca-certificates: the engine trusts its built-in web PKI roots, but a
# probe's `tls.ca_file` may point at /etc/ssl/certs/ca-certificates.crt.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# A fixed, non-root user. Its home is the cache directory, so a config
# without `engine.cache_dir` still has a writable default
# ($HOME/.cache/wasmprobe).
RUN set -eux; \
    groupadd --system --gid 10001 wasmprobe; \
    useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/cache/wasmprobe --shell /usr/sbin/nologin wasmprobe; \
    install -d -o 10001 -g 10001 -m 0750 /var/cache/wasmprobe

COPY --from=builder /out/bin/wasmprobe /usr/local/bin/wasmprobe
COPY --from=builder /out/plugins/ /usr/share/wasmprobe/plugins/
COPY deploy/probes.container.toml /etc/wasmprobe/probes.toml
# `check` and `probe` default to ./probes.toml: this one.
WORKDIR /etc/wasmprobe

EXPOSE 10464
USER 10001:10001

# The bundled plugins compiled into the image's cache directory, so a
# container starts without compiling them. wasmtime keys each entry by its
# own version, its settings and the CPU features it compiled for: on a host
# whose CPU differs, the entry is not used and the plugin is compiled again
# at start (and cached, when the directory is writable).
RUN ["wasmprobe", "compile", "--config", "/etc/wasmprobe/probes.toml"]

# Liveness of the engine (never probe results). The CLI has no health
# subcommand and bookworm-slim has neither curl nor wget; rather than add
# curl and its libraries to the image, bash (always present) speaks the one
# plain HTTP request through /dev/tcp and checks the status line.
# It assumes plain HTTP on port 10464: with --listen on another port or TLS
# from --web-config, override it (docker run --health-cmd ...) or turn it off
# (--no-healthcheck). Kubernetes ignores HEALTHCHECK and uses the pod's own
# probes (deploy/kubernetes/statefulset.yaml).
# start-period covers the first start, when every plugin is compiled before
# the port opens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/10464 && printf 'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == 'HTTP/1.'[01]' 200 '* ]]"]

# SIGTERM: readiness goes false, scheduling stops, runs in flight get
# --drain (default 10s) to finish, exit 0. Give `docker stop` more than the
# drain time (docker stop -t 20, or docker run --stop-timeout 20).
ENTRYPOINT ["wasmprobe"]
CMD ["run", "--config", "/etc/wasmprobe/probes.toml"]
