#!/usr/bin/env bash
# Fifth lane on 2026-12-04 (seventh session): once the AlphaEdit replay run (runs/LANE2.sh) ends,
# MEMIT holding the earlier edits at fresh keys (γ = 0) on Gemma 3, to 2,000 edits. One torch
# thread. Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
until grep "seq-smollm2-cf-alphaedit-replay" "$log" | tail -n 1 | grep -q " end "; do sleep 30; done
echo "$(date -u +%FT%TZ) start seq-gemma3-cf-memit-hold" >> "$log"
OMP_NUM_THREADS=1 N=2000 runs/seq-gemma3-cf-memit-hold/COMMAND.sh > runs/seq-gemma3-cf-memit-hold/QUEUE.out 2>&1
echo "$(date -u +%FT%TZ) end seq-gemma3-cf-memit-hold (exit $?)" >> "$log"
