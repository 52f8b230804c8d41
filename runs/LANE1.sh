#!/usr/bin/env bash
# First lane from 2026-12-05: MEMIT held at keys read now (`--preset sequential`) with v_lr 1.0 and
# damping 1e-2 on Gemma 3, to 2,000 edits (500, 1,000, 1,500 scored 2026-12-05). One torch thread, beside
# runs/LANE2.sh; start this one first and the second once it has loaded. Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-gemma3-cf-memit-hold-lr1-damp" OMP_NUM_THREADS=1 N=2000 runs/seq-gemma3-cf-memit-hold-lr1-damp/COMMAND.sh
