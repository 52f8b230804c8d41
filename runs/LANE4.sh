#!/usr/bin/env bash
# Fourth lane on 2026-12-04 (seventh session): MEMIT holding the earlier edits at fresh keys
# (replay_scale γ = 0) on SmolLM2, to 2,000 edits. One torch thread. Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
echo "$(date -u +%FT%TZ) start seq-smollm2-cf-memit-hold" >> "$log"
OMP_NUM_THREADS=1 N=2000 runs/seq-smollm2-cf-memit-hold/COMMAND.sh > runs/seq-smollm2-cf-memit-hold/QUEUE.out 2>&1
echo "$(date -u +%FT%TZ) end seq-smollm2-cf-memit-hold (exit $?)" >> "$log"
