#!/usr/bin/env bash
# Complete 2026-12-05 09:59 UTC (all 2,000 edits and checkpoints); started again it only finds that.
# First lane from 2026-12-05 04:55 UTC: MEMIT on Gemma 3 as the papers run it sequentially, at the
# defaults since 2026-12-05 (v_lr 1.0, damping 1e-2), 2,000 edits (runs/seq-gemma3-cf-memit-lr1-damp).
# One torch thread, beside runs/LANE2.sh; start this one first and the second once it has loaded.
# Logs to runs/QUEUE.log. (The lane before it, runs/seq-gemma3-cf-memit-hold-lr1-damp, completed
# 2026-12-05 04:42 UTC.)
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-gemma3-cf-memit-lr1-damp" OMP_NUM_THREADS=1 N=2000 runs/seq-gemma3-cf-memit-lr1-damp/COMMAND.sh
