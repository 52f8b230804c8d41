#!/usr/bin/env bash
# docs/mass-editing.md, "At 2,000 edits, at a glance": every sequential CounterFact run that reached 2,000
# edits, from its records (reads only; safe beside running runs). Writes runs/glance-2000.md.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python scripts/glance_table.py --edits 2000 \
 "SmolLM2|unedited|runs/seq-smollm2-cf-2000|none" \
 "SmolLM2|sequential ROME|runs/seq-smollm2-cf-2000|rome" \
 "SmolLM2|MEMIT|runs/seq-smollm2-cf-2000|memit" \
 "SmolLM2|MEMIT, replay_edits|runs/seq-smollm2-cf-memit-replay|memit" \
 "SmolLM2|MEMIT, preserve_edits|runs/seq-smollm2-cf-memit-preserve|memit" \
 "SmolLM2|**MEMIT, --preset sequential**|runs/seq-smollm2-cf-memit-hold|memit" \
 "SmolLM2|MEMIT, replay_edits pulled a quarter of the way back (γ = 0.25)|runs/seq-smollm2-cf-memit-replay-quarter|memit" \
 "SmolLM2|AlphaEdit|runs/seq-smollm2-cf-2000|alphaedit" \
 "SmolLM2|AlphaEdit, preserve_contexts|runs/seq-smollm2-cf-alphaedit-contexts|alphaedit" \
 "SmolLM2|AlphaEdit, replay_edits|runs/seq-smollm2-cf-alphaedit-replay|alphaedit" \
 "SmolLM2|AlphaEdit, held at keys read now|runs/seq-smollm2-cf-alphaedit-hold|alphaedit" \
 "SmolLM2|AlphaEdit, held, the reference's null space|runs/seq-smollm2-cf-alphaedit-hold-ref|alphaedit" \
 "SmolLM2|AlphaEdit, held, the reference's null space, C from text with subjects|runs/seq-smollm2-cf-alphaedit-hold-ref-entity|alphaedit" \
 "Gemma 3|unedited|runs/seq-gemma3-cf-2000-postnorm|none" \
 "Gemma 3|sequential ROME|runs/seq-gemma3-cf-2000-rome-6ctx|rome" \
 "Gemma 3|MEMIT (v_lr 0.5, damping 10⁻³: the defaults until 2026-12-05)|runs/seq-gemma3-cf-2000-postnorm|memit" \
 "Gemma 3|MEMIT (the defaults from 2026-12-05: v_lr 1.0, damping 10⁻²)|runs/seq-gemma3-cf-memit-lr1-damp|memit" \
 "Gemma 3|MEMIT, preserve_edits (v_lr 0.5, damping 10⁻³)|runs/seq-gemma3-cf-memit-preserve|memit" \
 "Gemma 3|MEMIT, --preset sequential (v_lr 0.5, damping 10⁻³)|runs/seq-gemma3-cf-memit-hold|memit" \
 "Gemma 3|**MEMIT, --preset sequential** (the defaults from 2026-12-05: v_lr 1.0, damping 10⁻²)|runs/seq-gemma3-cf-memit-hold-lr1-damp|memit" \
 "Gemma 3|AlphaEdit (v_lr 0.5, damping 10⁻³: the defaults until 2026-12-05)|runs/seq-gemma3-cf-2000-postnorm|alphaedit" \
 "Gemma 3|AlphaEdit (the defaults from 2026-12-05: v_lr 1.0, damping 10⁻²)|runs/seq-gemma3-cf-alphaedit-lr1-damp|alphaedit" \
 "Gemma 3|AlphaEdit, held at keys read now (v_lr 0.5, damping 10⁻³)|runs/seq-gemma3-cf-alphaedit-hold|alphaedit" \
 "Gemma 3|AlphaEdit, held, the reference's null space (v_lr 0.5, damping 10⁻³)|runs/seq-gemma3-cf-alphaedit-hold-ref|alphaedit" \
 "Gemma 3|AlphaEdit, held, the reference's null space (the defaults from 2026-12-05: v_lr 1.0, damping 10⁻²)|runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp|alphaedit" > runs/glance-2000.md.tmp && mv runs/glance-2000.md.tmp runs/glance-2000.md
