#!/usr/bin/env bash
# The long runs still owed, one after another (two CPU-bound runs on 2 cores slow each other
# many-fold). Every command is resumable and only does missing work, so this script can be
# started again each session; it logs to runs/QUEUE.log what ended when.
#     (setsid nohup runs/QUEUE.sh > /dev/null 2>&1 &)
# Pause it for benchmarks and CI with: kill -STOP / -CONT on its `factpatch eval` process.
# Order (issue 12): Gemma 3's unedited model on the same cases (scores only, ~40 min: the
# comparison every checkpoint needs), then its AlphaEdit with the update mapped through its
# post-MLP norm (batch 7 onward of 20 at the end of 2026-12-01; ~14 min a batch on the AMD host);
# the SmolLM2 run's last method (ROME, ~5 h), which completes that figure; then preserve_contexts to
# 2,000 edits, then Gemma 3's MEMIT and ROME. MEMIT 1,000 is done; runs/seq-gemma3-cf-2000 (without
# the mapping) is kept as the record of the collapse (docs/mass-editing.md, "Gemma 3"). Each
# continues across sessions from what is committed (z of MEMIT/AlphaEdit batches, ROME's patches:
# .gitignore).
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {  # name, then the environment and command
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
step "seq-gemma3-cf-2000-postnorm none" METHODS=none runs/seq-gemma3-cf-2000-postnorm/COMMAND.sh
step "seq-gemma3-cf-2000-postnorm alphaedit" METHODS=alphaedit runs/seq-gemma3-cf-2000-postnorm/COMMAND.sh
step "seq-smollm2-cf-2000" runs/seq-smollm2-cf-2000/COMMAND.sh
# whether AlphaEdit's preserve_contexts becomes the default: its run taken on to 2,000 (~1 h of batches)
step "seq-smollm2-cf-alphaedit-contexts" N=2000 runs/seq-smollm2-cf-alphaedit-contexts/COMMAND.sh
step "seq-gemma3-cf-2000-postnorm all" runs/seq-gemma3-cf-2000-postnorm/COMMAND.sh
