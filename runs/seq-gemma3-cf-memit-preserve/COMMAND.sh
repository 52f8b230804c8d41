#!/usr/bin/env bash
# MEMIT with the earlier edits' keys in its solve (`memit.preserve_edits`) on Gemma 3 270M: the
# protocol and cases of runs/seq-gemma3-cf-2000-postnorm (whose AlphaEdit and MEMIT checkpoints are
# the comparison), with that one change — on SmolLM2 it was the one setting to meet the ES, PS and
# NS targets at 1,000 edits (runs/seq-smollm2-cf-memit-preserve; docs/mass-editing.md, "MEMIT with
# the earlier edits in its solve"); this run asks whether it does so on the other model. Batch 0's z
# (found on the unedited model with the same settings: MEMIT's and this run's step 1 alike) was
# copied from runs/seq-gemma3-cf-2000-postnorm/memit/targets/0000.safetensors, so batch 0 records
# no z time. Resumable; N=1000 by default (~2 h at one thread beside another run), N=2000 continues it.
# MEMIT's settings of this run (v_lr 0.5, post_norm_damping 1e-3) were Gemma 3's defaults until
# 2026-12-05, when they became 1.0 and 1e-2 (editing/registry.py, MODEL_DEFAULTS); they are pinned
# below so that the run stays resumable and reproducible.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods memit --set memit.preserve_edits=true \
  --set memit.v_lr=0.5 --set memit.post_norm_damping=0.001 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-1000}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-memit-preserve
