#!/usr/bin/env bash
# First lane on 2026-12-04 (sixth session): MEMIT replay_edits on SmolLM2 from 1,000 to 2,000 edits.
# One torch thread, beside the second lane (runs/LANE2.sh). Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-smollm2-cf-memit-replay" OMP_NUM_THREADS=1 N=2000 runs/seq-smollm2-cf-memit-replay/COMMAND.sh
