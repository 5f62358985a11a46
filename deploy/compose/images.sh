#!/usr/bin/env bash
# Builds every image the compose cluster uses from binaries built on this machine: no
# registry is needed. Image names can be overridden (see README.md, "Compose cluster").
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${STREAMHOUSE_IMAGE:=streamhouse/streamhouse:dev}"
: "${ETCD_IMAGE:=streamhouse/etcd:3.6.16}"
: "${MINIO_IMAGE:=streamhouse/minio:dev}"
: "${PROMETHEUS_IMAGE:=streamhouse/prometheus:dev}"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
export CGO_ENABLED=0
go build -trimpath -o "$ctx/streamhouse" ./cmd/streamhouse
go build -trimpath -o "$ctx/streamctl" ./cmd/streamctl
for tool in etcd etcdctl minio; do
	[ -x "bin/$tool" ] || { echo "bin/$tool missing: run 'make tools' first" >&2; exit 1; }
	cp "bin/$tool" "$ctx/"
done
mkdir -p "$ctx/tmp"
build() {
	if ! docker build -q -f "deploy/compose/images/$1.Dockerfile" -t "$2" "$ctx" >"$ctx/build.log" 2>&1; then
		cat "$ctx/build.log" >&2
		return 1
	fi
	echo "built $2"
}
# Prometheus: Debian's binary that `make tools` put in ./bin, with the C library it links
# against.
[ -x bin/prometheus ] || { echo "bin/prometheus missing: run 'make tools' first" >&2; exit 1; }
mkdir -p "$ctx/prometheus/usr/bin" "$ctx/prometheus/prometheus"
cp bin/prometheus "$ctx/prometheus/usr/bin/"
for lib in $(ldd bin/prometheus | grep -o '/[^ ]*'); do
	mkdir -p "$ctx/prometheus$(dirname "$lib")"
	cp -L "$lib" "$ctx/prometheus$lib"
done
cp deploy/compose/prometheus.yml "$ctx/"
build streamhouse "$STREAMHOUSE_IMAGE"
build etcd "$ETCD_IMAGE"
build minio "$MINIO_IMAGE"
build prometheus "$PROMETHEUS_IMAGE"
