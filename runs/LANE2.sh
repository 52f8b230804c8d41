#!/usr/bin/env bash
# The second lane of runs/QUEUE.sh as changed on 2026-12-03 23:40 UTC (that queue's own second lane
# was stopped): MEMIT replay_edits on SmolLM2 to 1,000 edits, then ROME preserve_edits to 1,000.
# One torch thread each, beside QUEUE.sh's first lane (Gemma 3's ROME). Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-smollm2-cf-memit-replay" OMP_NUM_THREADS=1 N=1000 runs/seq-smollm2-cf-memit-replay/COMMAND.sh
step "seq-smollm2-cf-rome-preserve" OMP_NUM_THREADS=1 N=1000 runs/seq-smollm2-cf-rome-preserve/COMMAND.sh
