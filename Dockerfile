# svcproxy image: a static binary on Debian with the netfilter tools it drives.
# Debian's iptables package has both backends (iptables-legacy, iptables-nft):
# svcproxy picks the node's at start, as upstream's image does.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/svcproxy ./cmd/svcproxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables conntrack iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/svcproxy /usr/local/bin/svcproxy
ENTRYPOINT ["/usr/local/bin/svcproxy"]
CMD ["run"]
