# syntax=docker/dockerfile:1
# rolegate image: the release binary on distroless, as uid/gid 65532, no shell.
#   docker build -t ghcr.io/rolegate/rolegate:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds; the binary is copied out of
# target/ because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rolegate \
    && install -D -m 0755 target/release/rolegate /out/rolegate

# cc: glibc and libgcc, which a Rust binary links against; nonroot: uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/rolegate /usr/local/bin/rolegate
# Defaults for `docker run -v ./policies:/etc/rolegate/policies`; the Helm chart sets its own.
ENV ROLEGATE_POLICIES=/etc/rolegate/policies \
    ROLEGATE_LISTEN=0.0.0.0:50051 \
    ROLEGATE_ADMIN_LISTEN=0.0.0.0:9090
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/rolegate"]
CMD ["serve"]
