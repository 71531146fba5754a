# syntax=docker/dockerfile:1
# tailnet-operator image: one static-ish binary on a distroless, non-root base.
#   docker build -t tailnet-operator .
# The binary is the entrypoint: the chart passes `run ...` to the operator container and
# `mcp ...` to the MCP sidecar. (No Docker engine runs on this project's CI machines:
# scripts/check_dockerfile.py, run by scripts/test, replays the build stage's COPY lines into an
# empty directory and resolves the crate there with the cargo steps' manifest and lock checks;
# the image itself is not built in CI.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: build a dummy crate with the
# real manifests, then the real sources. Cargo.toml names every target (the benches too), so
# their sources must be here for the manifest to parse; benches change rarely.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
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
