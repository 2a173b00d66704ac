# The cubesat image: one statically linked binary in an empty (`scratch`) image, run as a
# non-root user. No shell, no package manager, no system CA bundle: the upstream
# (ingest.lightstep.com) is verified against the Mozilla roots compiled into the binary
# (webpki-roots), which cubesat falls back to when the system has no CA roots;
# `/diagnostics` says which roots are in use.
#
#   docker build -t cubesat .
#   docker run --rm -p 8383:8383 -p 8180:8180 -e LIGHTSTEP_ACCESS_TOKEN cubesat
#
# This file compiles in a Rust image pulled from a registry. Where no registry is reachable
# (CI, air-gapped builds), build the binary on the host and package it with
# Dockerfile.prebuilt instead, which needs no base image at all (see the README).

ARG RUST_IMAGE=docker.io/library/rust:1.88-bookworm

FROM ${RUST_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# crt-static links glibc into the binary (stable gnu target). glibc >= 2.34 carries its DNS and
# /etc/hosts resolvers inside libc, so name resolution works without NSS modules in scratch.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --locked --release --target "$target" \
 && mkdir -p /out/var/lib/cubesat \
 && cp "target/$target/release/cubesat" /out/cubesat

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cubesat" \
      org.opencontainers.image.description="A Lightstep Satellite-compatible trace ingest proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/cubesat /cubesat
# A writable directory for a spool (--spool-dir) or certificates, owned by the runtime user.
COPY --from=build --chown=65532:65532 /out/var/lib/cubesat /var/lib/cubesat
USER 65532:65532
# Plain ingest, TLS ingest, admin (serve); ingest and admin + UI (dev).
EXPOSE 8383 9393 8180 8360 8361
# Probes are left to the orchestrator: GET /_ready and /_live on the admin port.
ENTRYPOINT ["/cubesat"]
CMD ["serve"]
