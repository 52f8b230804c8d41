#!/usr/bin/env bash
# Second lane from 2026-12-05 (second session), after the top-layer sweep (runs/LANE3.sh): AlphaEdit
# held with the reference's null space on Gemma 3 at its defaults since 2026-12-05, 2,000 edits
# (runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp). One torch thread, beside runs/LANE1.sh; start
# this one once the other has loaded. Logs to runs/QUEUE.log. (The lane before it,
# runs/seq-gemma3-zsre-500, completed 2026-12-05 08:31 UTC.)
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
# From 2026-12-05 11:59 UTC alone (runs/LANE1.sh stopped at 1,000 edits), so at two torch threads;
# complete at 2,000 edits 13:27 UTC.
step "seq-gemma3-cf-alphaedit-hold-ref-lr1-damp" OMP_NUM_THREADS=2 N=2000 runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp/COMMAND.sh
