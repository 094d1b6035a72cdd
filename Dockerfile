# svcproxy image: the static binary and the netfilter tools it drives, with
# their libraries, and nothing else. deploy/image/rootfs.sh picks the files;
# `make images` runs the same script on a Debian bookworm host and packs the
# same files without Docker. Both iptables backends are there (iptables-legacy,
# iptables-nft): svcproxy picks the node's at start, as upstream's image does.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/svcproxy ./cmd/svcproxy

FROM debian:bookworm-slim AS files
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables conntrack iproute2 netbase
COPY --from=build /out/svcproxy /svcproxy
COPY deploy/image/rootfs.sh /rootfs.sh
RUN sh /rootfs.sh svcproxy /rootfs /svcproxy

FROM scratch
COPY --from=files /rootfs/ /
ENTRYPOINT ["/usr/local/bin/svcproxy"]
CMD ["run"]
