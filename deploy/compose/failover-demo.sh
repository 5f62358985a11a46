#!/usr/bin/env bash
# Continuous produce, `docker kill` of an agent, the assignment table before and after
# with epochs, and a check that every acked record is still readable (run after `make up`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
VICTIM=${VICTIM:-agent1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$STREAMCTL" topic create failover --partitions 6 >/dev/null 2>&1 || true
sleep 3
say "before"
"$STREAMCTL" cluster status
say "producing continuously through $STREAMHOUSE_ADDR"
(
	i=0
	while true; do
		i=$((i + 1))
		# Each acked line is "failover/<partition>@<offset> <value>".
		if ack=$("$STREAMCTL" produce failover --key "k$((i % 12))" "v$i" 2>/dev/null); then
			echo "$ack v$i" >>"$work/acked"
		fi
	done
) &
sleep 3
say "docker kill $VICTIM at $(date +%T.%3N)"
"${COMPOSE[@]}" kill "$VICTIM" >/dev/null
sleep 12
kill %1 2>/dev/null || true
wait 2>/dev/null || true
say "after"
"$STREAMCTL" cluster status
say "checking $(wc -l <"$work/acked") acked records"
lost=0
"$STREAMCTL" consume failover --from earliest --output json |
	sed -n 's/.*"partition":\([0-9]*\),"offset":\([0-9]*\),.*"value":"\([^"]*\)".*/failover\/\1@\2 \3/p' | sort >"$work/read"
sort "$work/acked" >"$work/acked.sorted"
lost=$(comm -23 "$work/acked.sorted" "$work/read" | wc -l)
echo "acked: $(wc -l <"$work/acked.sorted")  readable: $(comm -12 "$work/acked.sorted" "$work/read" | wc -l)  lost: $lost"
say "restart $VICTIM"
"${COMPOSE[@]}" start "$VICTIM" >/dev/null
[ "$lost" -eq 0 ]
