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
# Prometheus: Debian's package, with the C library its binary links against. promtool
# goes to ./bin for `promtool check config`.
(
	cd "$ctx"
	apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }
	dpkg-deb -x prometheus_*.deb pkg
	mkdir -p prometheus/usr/bin prometheus/prometheus
	cp pkg/usr/bin/prometheus prometheus/usr/bin/
	for lib in $(ldd pkg/usr/bin/prometheus | grep -o '/[^ ]*'); do
		mkdir -p "prometheus$(dirname "$lib")"
		cp -L "$lib" "prometheus$lib"
	done
)
cp "$ctx/pkg/usr/bin/promtool" bin/promtool
cp deploy/compose/prometheus.yml "$ctx/"
build streamhouse "$STREAMHOUSE_IMAGE"
build etcd "$ETCD_IMAGE"
build minio "$MINIO_IMAGE"
build prometheus "$PROMETHEUS_IMAGE"
