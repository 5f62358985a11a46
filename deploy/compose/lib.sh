# Shared by the demo scripts: the compose command, the project, and streamctl.
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(cd ../.. && pwd)
PROJECT=${COMPOSE_PROJECT:-streamhouse}
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose -p "$PROJECT"); else COMPOSE=(docker-compose -p "$PROJECT"); fi
export STREAMHOUSE_ADDR=${STREAMHOUSE_ADDR:-127.0.0.1:${AGENT2_PORT:-50052}}
STREAMCTL="$ROOT/bin/streamctl"
[ -x "$STREAMCTL" ] || (cd "$ROOT" && go build -o bin/streamctl ./cmd/streamctl)
etcdctl() { "${COMPOSE[@]}" exec -T etcd1 /usr/local/bin/etcdctl "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
