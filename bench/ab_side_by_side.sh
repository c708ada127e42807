#!/bin/bash
# Two source trees' servers side by side on one core, loaded at the same moment from the other core, so both see the
# same machine (this kind's speed drifts by ±15 % within minutes). Per round: frames only (a turn every 100 s), then
# a turn every 2.5 s per call; the difference is what the turns cost. Server CPU comes from /proc.
#
#   git worktree add /tmp/base <commit>
#   bench/ab_side_by_side.sh /tmp/base . 80 3        # tree A, tree B, calls per server, rounds
set -eu
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); N=${3:-80}; ROUNDS=${4:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd); PY=${PYTHON:-$ROOT/.venv/bin/python}
CLIENT=${LOAD_CLIENT:-$ROOT/../shared/bench/load_client.py}
taskset -c 0 "$PY" "$A/bench/fake_server.py" --reply two-sentences --port 18781 > /dev/null 2>&1 & PA=$!
taskset -c 0 "$PY" "$B/bench/fake_server.py" --reply two-sentences --port 18782 > /dev/null 2>&1 & PB=$!
trap 'kill $PA $PB 2>/dev/null' EXIT
sleep 5
load() {  # port turn-interval pid
  taskset -c 1 "$PY" "$CLIENT" --protocol cf-voice --url "ws://127.0.0.1:$1/agents/assistant/bench-{i}" -n "$N" \
    --duration 25 --turn-interval "$2" --reply-timeout 2 --server-pid "$3" --label "side-by-side-$2" \
    --out /tmp/ab_side_by_side.jsonl 2>&1 | tail -1 | grep -o "server_cpu=[0-9.]*" | cut -d= -f2
}
echo "| round | turn every | A: server CPU % | B: server CPU % |"
echo "|---:|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
  for ti in 100 2.5; do
    load 18781 "$ti" "$PA" > /tmp/ab_side_a & LP=$!
    b=$(load 18782 "$ti" "$PB"); wait $LP
    echo "| $round | $ti s | $(cat /tmp/ab_side_a) | $b |"
  done
done
