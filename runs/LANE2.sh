#!/usr/bin/env bash
# Second lane from 2026-12-05 03:40 UTC: zsRE on Gemma 3 (AlphaEdit at its defaults, MEMIT held with
# `--preset sequential`, the unedited model), 500 edits in batches of 100 (runs/seq-gemma3-zsre-500).
# One torch thread, beside runs/LANE1.sh. Logs to runs/QUEUE.log. (The lane before it,
# runs/seq-smollm2-cf-memit-replay-quarter, completed 2026-12-05 03:10 UTC.)
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-gemma3-zsre-500" OMP_NUM_THREADS=1 runs/seq-gemma3-zsre-500/COMMAND.sh
