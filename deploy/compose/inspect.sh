#!/usr/bin/env bash
# The cluster as etcd sees it: members, partition leases with epochs, high-water marks,
# segments and consumer groups (docs/operations.md explains each view).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
say "etcd members"
etcdctl member list -w table
say "agents (node keys, attached to their sessions)"
etcdctl get --prefix /streamhouse/nodes/ --print-value-only | grep -v '^$'
say "partition leases: key, epoch (CreateRevision), owner"
etcdctl get --prefix /streamhouse/leases/ -w fields | awk -F' : ' '/"Key"/{k=$2} /"CreateRevision"/{e=$2} /"Value"/{print k, "epoch", e, $2}' | tr -d '"\\'
say "high-water marks"
etcdctl get --prefix /streamhouse/hwm/ | paste - -
say "segments per partition"
etcdctl get --prefix /streamhouse/segments/ --keys-only | grep -v '^$' | sed 's|/[0-9]*$||' | sort | uniq -c
say "consumer groups"
etcdctl get --prefix /streamhouse/groups/ | paste - - || true
