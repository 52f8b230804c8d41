#!/usr/bin/env bash
# AlphaEdit held at keys read now with the reference's null space (runs/seq-smollm2-cf-alphaedit-hold-ref:
# ES / PS 94.95 / 85.7 at 2,000 edits, 29.4 % of the known facts) with one change: C, and so the
# null space, estimated from text with subjects in it — runs/alphaedit-sweep/entity-corpus.txt
# (scripts/entity_corpus.py: the default self-sampled corpus interleaved with as many tokens of true
# CounterFact facts from records 2000 on whose subjects neither known_1000 nor the edited cases use;
# 40,960 tokens read). Under that C a subject's key holds less of its energy in the null space, and
# on one batch of 100 AlphaEdit kept 3–11 more of 279 known facts at equal or lower ES ("C from text
# with subjects in it"); this asks whether the gain grows or fades over 2,000 sequential edits.
# The same absolute threshold (2·10⁻²) as the run it is paired with.
# Batch 0's z does not depend on C (it is found on the unedited model): copied from
# runs/seq-smollm2-cf-alphaedit-hold-ref/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.nullspace_threshold=0.02 \
  --corpus runs/alphaedit-sweep/entity-corpus.txt --corpus-tokens 40960 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-hold-ref-entity
