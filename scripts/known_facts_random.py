"""Do a sequential run's edits take the known facts by their directions, or would any change of that size?

    python scripts/known_facts_random.py runs/seq-smollm2-cf-alphaedit-hold-ref-entity alphaedit --edits 100 [--draws 5]

The control an edit's damage is judged against. The first `--edits` edits of METHOD's patch stack
sum to one ΔW a module (U diag(s) Vᵀ, its singular value decomposition: V the input directions the
edits read — the keys —, U the output directions they write). Each condition below applies a
change with the *same singular values* at the same modules, and measures the known_1000 facts the
unedited model knew whose subject no edit touched exactly as a run's health entries do (one
teacher-forced pass: a fact is kept while every token of its answer is the model's first choice;
and its answer's log-probability change in nats):

- `edited`: ΔW itself (the facts the run's checkpoint would count);
- `random directions`: U and V replaced by random orthonormal bases (Haar) — a change of the same
  size and spectrum that reads and writes nowhere in particular;
- `edits' inputs, random outputs`: V kept, U random — the edits' keys read, something else written;
- `edits' outputs, random inputs`: U kept, V random — what the edits write, read from random keys;
- `the same norm, every direction`: not the same spectrum but the same Frobenius norm ‖ΔW‖, as a
  Gaussian matrix (full rank: its energy spread over every direction rather than the edits' few).

If `random directions` keeps far more facts than `edited`, the loss is the edits' directions, not
their size; the two half-random rows say which side carries it; and if the full-rank change keeps
far more than `random directions`, it is the size concentrated in as few directions as a batch
writes, not the total. Each random condition is drawn
`--draws` times (seeds 0, 1, …); the summary has each draw's count and their mean. Writes
`known-random-METHOD-EDITS.json` (summary) and `.jsonl` (one line a fact) in the run directory.
Seconds a condition on SmolLM2 at one thread, after loading.
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from factpatch.core.models import weights_fingerprint
from factpatch.tracing.dataset import answer_scores
from known_facts_lost import load_run_facts, run_arguments  # scripts/: the same run and facts
from known_facts_where import added, summed_deltas

logger = logging.getLogger("known_facts_random")


def haar_orthonormal(rows: int, columns: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, columns) with orthonormal columns, uniformly distributed (QR of a Gaussian, signs fixed)."""
    Q, R = torch.linalg.qr(torch.randn(rows, columns, generator=generator, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))  # without the sign fix QR's output is not uniform


def respun(delta: torch.Tensor, keep: str, generator: torch.Generator) -> torch.Tensor:
    """ΔW (d_out, d_in) with the same singular values and its output directions U, input directions
    V or neither (`keep` "outputs", "inputs", "none") replaced by random orthonormal ones; or
    (`keep` "norm") a Gaussian matrix of the same Frobenius norm, full rank."""
    if keep == "norm":
        G = torch.randn(delta.shape, generator=generator, dtype=torch.float64)
        return (G * (delta.double().norm() / G.norm())).to(delta.dtype)
    U, s, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    rank = int((s > s[0] * 1e-6).sum()) if s.numel() and s[0] > 0 else 0
    U, s, V = U[:, :rank], s[:rank], Vh[:rank].T
    if keep != "outputs":
        U = haar_orthonormal(U.shape[0], rank, generator)
    if keep != "inputs":
        V = haar_orthonormal(V.shape[0], rank, generator)
    return ((U * s) @ V.T).to(delta.dtype)


CONDITIONS = {"random directions": "none", "edits' inputs, random outputs": "inputs",
              "edits' outputs, random inputs": "outputs", "the same norm, every direction": "norm"}


def measured(lm, facts: list, unedited_log_probs: dict) -> tuple[list[bool], list[float]]:
    """Each fact: whether the model now still knows it, and its answer's log-probability change."""
    scores = answer_scores(lm, facts, progress=False)
    return ([all(t.hits) for t in scores],
            [sum(t.log_probs) - unedited_log_probs[f.id] for f, t in zip(facts, scores)])


def main() -> None:
    parser = run_arguments(__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="random draws of each control (default 5)")
    args = parser.parse_args()
    if args.draws < 1:
        parser.error("--draws must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_run_facts(parser, args)
    lm, facts = loaded.lm, loaded.facts
    deltas = summed_deltas(lm, loaded.patches)
    before = loaded.unedited_log_probs
    unedited, _ = measured(lm, facts, before)
    with added(lm, deltas):
        edited, edited_change = measured(lm, facts, before)
    kept: dict[str, list[list[bool]]] = {name: [] for name in CONDITIONS}
    change: dict[str, list[list[float]]] = {name: [] for name in CONDITIONS}
    for seed in tqdm(range(args.draws), desc="draws", unit="draw"):
        for name, keep in CONDITIONS.items():
            generator = torch.Generator().manual_seed(seed)
            control = {module: respun(delta, keep, generator) for module, delta in deltas.items()}
            with added(lm, control):
                k, c = measured(lm, facts, before)
            kept[name].append(k)
            change[name].append(c)
    if weights_fingerprint(lm.model) != loaded.fingerprint:
        raise SystemExit("error: the weights did not come back")

    def mean(values) -> float:
        return round(sum(values) / len(values), 4) if values else float("nan")

    rows = [{"id": f.id, "prompt": f.prompt, "subject": f.subject, "target": f.target,
             "kept": {"unedited": unedited[i], "edited": edited[i], **{n: [d[i] for d in kept[n]] for n in CONDITIONS}},
             "logprob_change": {"edited": round(edited_change[i], 4),
                                **{n: [round(d[i], 4) for d in change[n]] for n in CONDITIONS}}}
            for i, f in enumerate(facts)]
    summary = {
        "run": str(args.run), "method": args.method, "edits": loaded.edits, "facts": len(facts),
        "edited_modules": sorted(deltas),
        "delta_norms": {name: round(float(d.norm()), 6) for name, d in deltas.items()},
        "unedited_known": sum(unedited),  # all of them: the facts are the ones the unedited model knows
        "kept": {"edited": sum(edited), **{n: {"draws": [sum(d) for d in kept[n]],
                                                "mean": mean([sum(d) for d in kept[n]])} for n in CONDITIONS}},
        "logprob_change_mean": {"edited": mean(edited_change),
                                **{n: {"draws": [mean(d) for d in change[n]],
                                       "mean": mean([mean(d) for d in change[n]])} for n in CONDITIONS}},
    }
    for name, value in summary["kept"].items():
        shown = value if isinstance(value, int) else f"{value['mean']} (draws {value['draws']})"
        logger.info("%s: %s of %d kept", name, shown, len(facts))
    loaded.write("random", rows, summary)


if __name__ == "__main__":
    main()
