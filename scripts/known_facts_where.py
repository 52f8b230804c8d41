"""Through which token positions do a sequential run's edits take the facts the model knew?

    python scripts/known_facts_where.py runs/seq-smollm2-cf-alphaedit-contexts alphaedit [--edits 1000]

Applies the first `--edits` edits of METHOD's patch stack to the run's model. Every edited weight
W + ΔW acts at every position of every prompt; this script takes ΔW's contribution out
(ΔW x subtracted from the module's output) at chosen positions only, and asks which known facts
come back. For every known_1000 fact the unedited model knew whose subject no edit touched, the
model's greedy first token is recorded under each condition:

- `edited`: the stack as it is (the facts it loses are the ones examined);
- `removed at subject`, `removed at last`, `removed at other`: ΔW taken out at the subject's
  tokens, at the prompt's last token, or at every other token, in every edited layer;
- `only at subject`, `only at last`: ΔW kept at those tokens alone;
- `removed everywhere`: the unedited model (a check: every fact comes back);
- `removed at subject, <module>`: ΔW taken out at the subject's tokens in one edited layer only.

A lost fact that comes back when ΔW is removed at the subject's tokens alone was lost through
what the edits wrote at its subject (the keys the null space was meant to protect); one that
comes back when it is removed at the last token was lost through the relation's reading of the
answer. "Kept" is the first token only (as scripts/known_facts_lost.py). Writes
`known-where-METHOD-EDITS.json` (summary) and `.jsonl` (one line a fact) in the run directory.
A minute or two on a CPU.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from factpatch.core.hooks import body, unembed
from factpatch.core.models import weights_fingerprint
from factpatch.core.tokens import encode, encode_target, subject_token_range
from factpatch.editing.patch import load_patch
from known_facts_lost import load_run_facts, run_arguments  # scripts/: the same run and facts

logger = logging.getLogger("known_facts_where")

def _positions(T: int, subject: tuple[int, int], where: str) -> torch.Tensor:
    mask = torch.zeros(T, dtype=torch.bool)
    if where == "subject":
        mask[subject[0] : subject[1]] = True
    elif where == "last":
        mask[T - 1] = True
    elif where == "other":
        mask[:] = True
        mask[subject[0] : subject[1]] = False
        mask[T - 1] = False
    elif where == "everywhere":
        mask[:] = True
    return mask


CONDITIONS: dict[str, tuple[str, bool]] = {  # name -> (positions, whether ΔW is removed there or kept only there)
    "edited": ("nowhere", True),
    "removed at subject": ("subject", True),
    "removed at last": ("last", True),
    "removed at other": ("other", True),
    "only at subject": ("subject", False),
    "only at last": ("last", False),
    "removed everywhere": ("everywhere", True),
}


def summed_deltas(lm, patches: list[Path]) -> dict[str, torch.Tensor]:
    """Module name -> the stack's total ΔW (d_out, d_in); only nn.Linear modules (Llama, Gemma)."""
    total: dict[str, torch.Tensor] = {}
    for path in patches:
        for delta in load_patch(path).deltas:
            module_name = delta.param.removesuffix(".weight")
            if not isinstance(lm.model.get_submodule(module_name), torch.nn.Linear) or delta.transposed:
                raise SystemExit(f"error: {delta.param} is not an nn.Linear weight; this script reads Llama/Gemma runs")
            change = delta.tensor().float()
            total[module_name] = total[module_name] + change if module_name in total else change
    return total


@contextlib.contextmanager
def added(lm, deltas: dict[str, torch.Tensor]):
    """The model with each module's weight + its ΔW; the weights restored bit for bit after."""
    originals = {name: lm.model.get_submodule(name).weight.detach().clone() for name in deltas}
    try:
        for name, delta in deltas.items():
            lm.model.get_submodule(name).weight.data += delta.to(originals[name].dtype)
        yield
    finally:
        for name, weight in originals.items():
            lm.model.get_submodule(name).weight.data.copy_(weight)


@contextlib.contextmanager
def delta_removed(lm, deltas: dict[str, torch.Tensor], removed: torch.Tensor):
    """With ΔW applied: subtract ΔW x from each module's output in `deltas` at positions `removed` [T]."""

    def hook_for(delta: torch.Tensor):
        def hook(module, args, output):
            x = args[0]
            output[:, removed] -= torch.nn.functional.linear(x[:, removed], delta.to(x.dtype))
            return output

        return hook

    handles = [lm.model.get_submodule(name).register_forward_hook(hook_for(delta)) for name, delta in deltas.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def first_token(lm, ids: torch.Tensor) -> int:
    hidden = body(lm)(input_ids=ids, use_cache=False).last_hidden_state
    return int(unembed(lm, hidden[:, -1]).argmax(-1))


def main() -> None:
    parser = run_arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_run_facts(parser, args)
    lm, facts, edits = loaded.lm, loaded.facts, loaded.edits
    deltas = summed_deltas(lm, loaded.patches)
    # The summed ΔW is applied by hand here (not through the stack), so the edited model is W + ΣΔW
    # exactly as the hooks subtract it; the stack's own result differs only by float rounding.
    rows = []
    with added(lm, deltas):
        for fact in tqdm(facts, desc="facts", unit="fact"):
            ids = torch.tensor([encode(lm.tokenizer, fact.prompt)], dtype=torch.long, device=lm.device)
            T = ids.shape[1]
            subject = subject_token_range(lm.tokenizer, fact.prompt, fact.subject)
            truth = encode_target(lm.tokenizer, fact.prompt, fact.target)[1][0]
            kept = {}
            for condition, (where, removed_there) in CONDITIONS.items():
                mask = _positions(T, subject, where)
                with delta_removed(lm, deltas, mask if removed_there else ~mask):
                    kept[condition] = first_token(lm, ids) == truth
            if not kept["edited"]:  # which layer's write at the subject took it
                for name in deltas:
                    with delta_removed(lm, {name: deltas[name]}, _positions(T, subject, "subject")):
                        kept[f"removed at subject, {name}"] = first_token(lm, ids) == truth
            rows.append({"id": fact.id, "prompt": fact.prompt, "subject": fact.subject, "target": fact.target,
                         "tokens": T, "subject_range": list(subject), "kept": kept})
    if weights_fingerprint(lm.model) != loaded.fingerprint:
        raise SystemExit("error: the weights did not come back")

    lost = [r for r in rows if not r["kept"]["edited"]]
    summary = {
        "run": str(args.run), "method": args.method, "edits": edits, "facts": len(rows),
        "edited_layers": sorted(deltas),
        "unedited_first_token_right": sum(r["kept"]["removed everywhere"] for r in rows),
        "lost": len(lost),
        "lost_facts_back_when": {c: sum(r["kept"][c] for r in lost) for c in lost[0]["kept"] if c != "edited"} if lost else {},
        "kept_facts_lost_when": {c: sum(not r["kept"][c] for r in rows if r["kept"]["edited"]) for c in CONDITIONS if c != "edited"},
        "subject_ends_the_prompt": sum(r["subject_range"][1] == r["tokens"] for r in rows),
    }
    loaded.write("where", rows, summary)


if __name__ == "__main__":
    main()
