#!/usr/bin/env bash
# Second lane from 2026-12-05: MEMIT replaying the earlier edits a quarter of the way back
# (replay_scale γ = 0.25) on SmolLM2, to 2,000 edits (500 scored). One torch thread. Logs to
# runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-smollm2-cf-memit-replay-quarter" OMP_NUM_THREADS=1 N=2000 runs/seq-smollm2-cf-memit-replay-quarter/COMMAND.sh
