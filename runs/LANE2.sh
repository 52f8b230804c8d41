#!/usr/bin/env bash
# Second lane on 2026-12-04 (seventh session): AlphaEdit replay_edits on SmolLM2 from 1,000 to
# 2,000 edits (the sixth session took it to 1,000). One torch thread. Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-smollm2-cf-alphaedit-replay" OMP_NUM_THREADS=1 N=2000 runs/seq-smollm2-cf-alphaedit-replay/COMMAND.sh
