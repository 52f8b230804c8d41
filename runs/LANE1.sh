#!/usr/bin/env bash
# First lane from 2026-12-05 10:08 UTC: AlphaEdit held with the reference's null space on Gemma 3 at
# v_lr 1.0 and the post-norm damping 3e-3 (runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp3e-3),
# 2,000 edits, beside runs/LANE2.sh (the same at the default damping 1e-2). One torch thread.
# Logs to runs/QUEUE.log. Stopped at 1,000 edits 2026-12-05 12:00 UTC (docs/mass-editing.md says why);
# rerunning this continues it. Restarted 2026-12-05 13:50 UTC on another host: batches 0-9 were
# rebuilt from their saved z with other last bits (warnings in QUEUE.out; `factpatch eval status`
# names the checkpoints scored on them); a resume on yet another host does the same. (The lane before it, runs/seq-gemma3-cf-memit-lr1-damp, completed
# 2026-12-05 09:59 UTC.)
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-gemma3-cf-alphaedit-hold-ref-lr1-damp3e-3" OMP_NUM_THREADS=1 N=2000 runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp3e-3/COMMAND.sh
