#!/usr/bin/env bash
# Topics, produce, consume, and the segments they left in MinIO (run after `make up`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
say "create topics"
"$STREAMCTL" topic create my-orders --partitions 3 || true
"$STREAMCTL" topic create user-events --partitions 2 || true
say "produce 90 records"
# Each line is KEY:VALUE: a customer's orders go to the partition its key hashes to.
for i in $(seq 1 60); do echo "customer-$((i % 5)):{\"order\": $i}"; done | "$STREAMCTL" produce my-orders --key-separator : | tail -3
for i in $(seq 1 30); do echo "{\"event\": $i}"; done | "$STREAMCTL" produce user-events | tail -3
say "consume"
"$STREAMCTL" consume my-orders --from earliest --limit 5
"$STREAMCTL" consume user-events --from earliest --output json --limit 3
say "topics"
"$STREAMCTL" topic describe my-orders
say "the segment index in etcd"
etcdctl get --prefix /streamhouse/segments/ --keys-only | grep -v '^$'
say "the segments in MinIO (listed from inside agent2, with its credentials)"
"${COMPOSE[@]}" exec -T agent2 /usr/local/bin/streamhouse ls 's3://streamhouse-data?endpoint=http://minio:9000' data/
