#!/usr/bin/env bash
# The long runs still owed, one after another (two CPU-bound runs on 2 cores slow each other
# many-fold). Every command is resumable and only does missing work, so this script can be
# started again each session; it logs to runs/QUEUE.log what ended when.
#     (setsid nohup runs/QUEUE.sh > /dev/null 2>&1 &)
# Pause it for benchmarks and CI with: kill -STOP / -CONT on its `factpatch eval` process.
# Order (issue 12), as of 2026-12-02 15:10 UTC: Gemma 3's AlphaEdit and MEMIT are complete (the
# last step, Gemma 3's ROME, finds them so); zsRE sequential on SmolLM2 and AlphaEdit with norm
# anchoring to 500 edits are done (their steps only check); then SmolLM2's ROME (1,000 of 2,000
# edits and their checkpoints done; its batches now take ~30 min each on the AMD host, up from ~12
# for the first ones; then the 1,500 and 2,000 checkpoints' scoring), which completes that figure;
# then PRUNE on ROME's stack at 1,500 and 2,000 (1,000 done out of order); then preserve_contexts to
# 2,000 edits, then Gemma 3's ROME. MEMIT 1,000 is done; runs/seq-gemma3-cf-2000 (without the
# mapping) is kept as the record of the collapse (docs/mass-editing.md, "Gemma 3"). Each continues
# across sessions from what is committed (z of MEMIT/AlphaEdit batches, ROME's patches: .gitignore).
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
step() {  # name, then the environment and command
  local name=$1; shift
  echo "$(date -u +%FT%TZ) start $name" >> "$log"
  env "$@" > "runs/${name%% *}/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $name (exit $?)" >> "$log"
}
# A queue started while an earlier one's run is still going (the earlier script stopped to change
# the order) waits for that run rather than run beside it.
while pgrep -f "factpatch eval" > /dev/null; do sleep 30; done
# Steps whose runs are complete are kept below as comments (2026-12-03): each is resumable and a
# rerun only checks, but the checks cost ~2 min each.
# zsRE, sequential (the AlphaEdit paper's second table; ~1 h): 500 cases on SmolLM2
# done: step "seq-smollm2-zsre-500" runs/seq-smollm2-zsre-500/COMMAND.sh
# norm anchoring (NAS) on AlphaEdit, 500 edits: done 2026-12-02 (no gain; docs/mass-editing.md)
# done: step "seq-smollm2-cf-alphaedit-nas" runs/seq-smollm2-cf-alphaedit-nas/COMMAND.sh
# done: step "seq-smollm2-cf-2000" runs/seq-smollm2-cf-2000/COMMAND.sh
# PRUNE on ROME's stack at each later checkpoint (docs/mass-editing.md, "PRUNE on sequential ROME";
# ~10-25 min each, the scoring of every edited case); only once the run has them
# done: for n in 1000 1500 2000; do
# done:   [ -f "runs/seq-smollm2-cf-2000/prune-rome-$n.json" ] || step "seq-smollm2-cf-2000 prune $n" \
# done:     .venv/bin/python scripts/restrain_stack.py runs/seq-smollm2-cf-2000 rome --edits "$n" --base 1.2 --check 5
# done: done
# ENCORE's early stop of z on AlphaEdit, 500 edits (one batch: docs/mass-editing.md; ~1 h alone)
# done: step "seq-smollm2-cf-alphaedit-mpes" runs/seq-smollm2-cf-alphaedit-mpes/COMMAND.sh
# MEMIT with the earlier edits' keys in its solve (recursive least squares; what AlphaEdit's null
# space adds to the same K_p term), 500 edits (~1 h alone)
# done: step "seq-smollm2-cf-memit-preserve" runs/seq-smollm2-cf-memit-preserve/COMMAND.sh
# whether AlphaEdit's preserve_contexts becomes the default: its run taken on to 2,000 (~1 h of batches)
# done: step "seq-smollm2-cf-alphaedit-contexts" N=2000 runs/seq-smollm2-cf-alphaedit-contexts/COMMAND.sh
# MEMIT with the earlier edits in its solve held at 500 edits where plain MEMIT decayed (first since
# 2026-12-03 09:45 UTC: ~2.2 h alone, so its checkpoints land within a session; Gemma 3's ROME takes many hours)
# (docs/mass-editing.md, "MEMIT with the earlier edits in its solve"): on to 2,000 (~2 h alone)
# done 2026-12-03 14:02 UTC (complete; docs/mass-editing.md):
# done: step "seq-smollm2-cf-memit-preserve" N=2000 runs/seq-smollm2-cf-memit-preserve/COMMAND.sh
# Gemma 3's ROME (issue 12 asks for it beside AlphaEdit and MEMIT on both models). At the paper's
# settings its first batch of 100 took ~45 min on 2026-12-03's host (~15 h for 2,000; that batch is
# kept in the postnorm run's directory); with MEMIT's 6 contexts for v* (float32; --preset fast's bfloat16 is slow on this AVX2-only host), its own directory
# Two lanes at one torch thread each (since 2026-12-03 18:39 UTC): on 2 cores, two 1-thread
# processes each run at 70-90 % of one 2-thread process's pace alone, where two 2-thread processes
# run at a quarter (BENCHMARKS.md, "Two jobs on two cores"; runs/bench/omp-wait-2026-12-03/).
# Gemma 3's sequential ROME, on to 2,000 edits (1,000 done and scored; ~10 batches left).
lane_rome() { step "seq-gemma3-cf-2000-rome-6ctx" OMP_NUM_THREADS=1 runs/seq-gemma3-cf-2000-rome-6ctx/COMMAND.sh; }
# MEMIT preserve_edits on Gemma 3 (does SmolLM2's 1,000-edit result hold on the other model?): to
# 1,000 (done 2026-12-03 21:49 UTC), then on to 2,000; after it, in the same lane, sequential ROME
# with the earlier edits' keys in its metric (rome.preserve_edits) on SmolLM2 from 500 edits (done
# 2026-12-03 22:23 UTC: ES +3.6 over ROME, damage unchanged) to 1,000, where plain ROME decays faster.
lane_memit_preserve() {
  step "seq-gemma3-cf-memit-preserve" OMP_NUM_THREADS=1 N=2000 runs/seq-gemma3-cf-memit-preserve/COMMAND.sh
  step "seq-smollm2-cf-rome-preserve" OMP_NUM_THREADS=1 N=1000 runs/seq-smollm2-cf-rome-preserve/COMMAND.sh
}
lane_rome & lane_memit_preserve &
wait
