# syntax=docker/dockerfile:1
# tailnet-operator image: one static-ish binary on a distroless, non-root base.
#   docker build -t tailnet-operator .
# The binary is the entrypoint: the chart passes `run ...` to the operator container and
# `mcp ...` to the MCP sidecar. (No Docker engine runs on this project's CI machines, so this
# file is reviewed, not built, in CI; see docs/install-helm.md.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: build a dummy crate with the
# real manifests, then the real sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Touch the entry points so cargo rebuilds our crate over the dummy one.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin tailnet-operator \
    && strip target/release/tailnet-operator

# glibc, CA certificates and a nonroot user (65532), nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tailnet-operator /usr/local/bin/tailnet-operator
USER 65532:65532
EXPOSE 8080 8090
ENTRYPOINT ["/usr/local/bin/tailnet-operator"]
CMD ["run"]
