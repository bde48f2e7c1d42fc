# One image with every Ordertrail binary; compose.yaml picks the command.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl zlib1g libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 ordertrail
COPY --from=build /src/target/release/ordertrail-api /src/target/release/ordertrail-relay \
    /src/target/release/ordertrail-saga /src/target/release/ordertrail-order-history \
    /src/target/release/ordertrail-rider-etas /src/target/release/ordertrail-settlements \
    /src/target/release/mint-token /src/target/release/ordertrail-local /usr/local/bin/
USER ordertrail
