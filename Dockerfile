# Multi-stage build: compile with the Rust toolchain, ship a slim Debian image.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin freshwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/freshwatch --create-home freshwatch
COPY --from=build /src/target/release/freshwatch /usr/local/bin/freshwatch
USER freshwatch
WORKDIR /var/lib/freshwatch
EXPOSE 9187
# glibc keeps up to 8 malloc arenas per core, one per busy thread, and memory freed in one is not
# given back: at a million keys that slack was 80-120 MB of RSS (BENCHMARKS.md, section 6).
ENV MALLOC_ARENA_MAX=2
ENTRYPOINT ["/usr/local/bin/freshwatch"]
CMD ["run", "--config", "/etc/freshwatch/freshwatch.toml"]
