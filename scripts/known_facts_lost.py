"""Where the known facts a sequential run loses go: the model's new answer for each.

    python scripts/known_facts_lost.py runs/seq-smollm2-cf-2000 alphaedit [--edits 2000]

Applies the first `--edits` edits of METHOD's patch stack (runs/…/METHOD/patches/, in order) to
the run's model, and for every known_1000 fact the unedited model knew whose subject no edit
touched (the facts the run's "known facts kept" counts), records the first token the model now
predicts. A lost fact is then classed by that token, first match wins:

- an **object edits of its relation wrote**: the first token of some applied edit's new object o*
  whose relation template is the fact's (the edits pull the relation towards what they wrote);
- an **object edits of other relations wrote**, or a **displaced true object** (some edit's o^c);
- **a word that begins no object** ("the", "a", a quote…): the model no longer commits to an answer;
- something else.

The unedited model's answers to the same facts (its correct ones) are classed the same way, for
scale: CounterFact's objects are largely known_1000's (continents, languages, countries), so a
correct answer is often also something an edit wrote. Also how many facts share a relation
template with some edit. "Kept" here is the first token only; the run's count needs every token.
Writes `known-lost-METHOD-EDITS.json` (the
summary) and `.jsonl` (one line a fact) in the run directory. Minutes on a CPU: run it alone.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.hooks import body, unembed
from factpatch.core.models import load_model
from factpatch.core.tokens import encode, encode_target, pad_id
from factpatch.editing.patch import PatchStack, load_patch
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import KnownFacts

logger = logging.getLogger("known_facts_lost")

# answers that commit to no object: the model stopped answering rather than answering wrongly
FUNCTION_WORDS = {"", "the", "a", "an", "\"", "'", "(", ",", ".", "not", "one", "its", "his", "her", "their"}


@torch.no_grad()
def first_predictions(lm, prompts: list[str], batch_size: int = 32) -> list[int]:
    """The greedy next token after each prompt (prompts right-padded, read at their last token)."""
    out: list[int] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode(lm.tokenizer, p) for p in prompts[start : start + batch_size]]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), pad_id(lm.tokenizer), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = torch.tensor(e)
            mask[row, : len(e)] = 1
        hidden = body(lm)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(encoded)), torch.tensor([len(e) - 1 for e in encoded])]
        out += unembed(lm, last).argmax(-1).tolist()
    return out


def first_target_token(lm, prompt: str, target: str) -> int:
    return encode_target(lm.tokenizer, prompt, target)[1][0]


@dataclass
class RunFacts:
    """A sequential run's first `edits` edits of one method, and the known facts it is scored on."""

    run: Path
    method: str
    edits: int
    patches: list[Path]  # the patch files of those edits, in order
    cases: list  # the edited cases
    lm: object  # the run's model, unedited
    fingerprint: str  # the run's (and the unedited model's) weights fingerprint
    facts: list  # known_1000 facts the unedited model knows whose subject no edit touched
    unedited_log_probs: dict  # fact id -> its answer's log-probability on the unedited model (nats)

    def write(self, kind: str, rows: list[dict], summary: dict) -> None:
        """`<run>/known-<kind>-<method>-<edits>.jsonl` (one line a fact) and `.json` (the summary)."""
        stem = self.run / f"known-{kind}-{self.method}-{self.edits}"
        write_text_atomic(stem.with_suffix(".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
        write_text_atomic(stem.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
        logger.info("%s", json.dumps(summary, indent=2))


def run_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every script that reads a run's known facts takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path)
    parser.add_argument("method")
    parser.add_argument("--edits", type=int, default=None, help="edits applied (default: every patch)")
    parser.add_argument("--known", type=Path, default=Path("../shared/datasets/known_1000.json"))
    return parser


def load_run_facts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RunFacts:
    """The run's patches for `--edits`, its model (checked against the run's fingerprint) and the
    known facts its "known facts kept" counts; a bad argument is a parser error."""
    config = json.loads((args.run / "config.json").read_text())
    batch = int(config["batch_size"])
    patches = sorted((args.run / args.method / "patches").glob("*.safetensors"))
    n_patches = len(patches) if args.edits is None else args.edits // batch
    if n_patches > len(patches) or n_patches < 1:
        parser.error(f"{args.run}/{args.method} has {len(patches)} patches of {batch} edits (`factpatch eval rebuild "
                     f"{args.run} --methods {args.method} --edits {args.edits or 'N'}` writes them from the saved z)")
    edits = n_patches * batch
    cases = load_dataset(config["dataset"]["name"]).cases[:edits]
    lm = load_model(config["model"])
    if lm.fingerprint != config["fingerprint"]:
        parser.error("the model's weights are not the run's")
    known = KnownFacts.check(lm, args.known)
    touched = {c.request.subject.strip().lower() for c in cases}
    facts = [f for f, k in zip(known.facts, known.known) if k and f.subject.strip().lower() not in touched]
    return RunFacts(args.run, args.method, edits, patches[:n_patches], cases, lm, config["fingerprint"], facts,
                    {f.id: lp for f, lp in zip(known.facts, known.log_probs)})


def main() -> None:
    parser = run_arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_run_facts(parser, args)
    lm, facts, cases, edits = loaded.lm, loaded.facts, loaded.cases, loaded.edits
    before = first_predictions(lm, [f.prompt for f in facts])
    stack = PatchStack(lm)
    for path in loaded.patches:
        stack.apply(load_patch(path))
    after = first_predictions(lm, [f.prompt for f in facts])
    stack.revert()

    new_objects = collections.Counter(first_target_token(lm, c.request.text, c.request.target_new) for c in cases)
    old_objects = collections.Counter(first_target_token(lm, c.request.text, c.request.target_true) for c in cases
                                      if c.request.target_true)
    templates = {c.request.prompt for c in cases}
    known_templates = {str(row["known_id"]): row.get("template") for row in json.loads(args.known.read_text())}
    written_for = collections.defaultdict(set)  # relation template -> first tokens of the o* written with it
    for c in cases:
        written_for[c.request.prompt].add(first_target_token(lm, c.request.text, c.request.target_new))

    def kind(token: int, template: str | None) -> str:
        if token in written_for.get(template, ()):
            return "object edits of its relation wrote"
        if token in new_objects:
            return "object edits of other relations wrote"
        if token in old_objects:
            return "displaced true object"
        return "a word that begins no object (the, a, ...)" if lm.tokenizer.decode([token]).strip().lower() in FUNCTION_WORDS else "other"

    rows = []
    for fact, was, now in zip(facts, before, after):
        true_first = first_target_token(lm, fact.prompt, fact.target)
        template = known_templates.get(str(fact.id))
        rows.append({
            "id": fact.id, "prompt": fact.prompt, "target": fact.target,
            "kept": now == true_first, "answer_before": lm.tokenizer.decode([was]), "answer_now": lm.tokenizer.decode([now]),
            "class_now": kind(now, template), "class_before": kind(was, template), "edits_to_answer_now": new_objects.get(now, 0),
            "relation_edited": template in templates,
        })
    lost = [r for r in rows if not r["kept"]]
    summary = {
        "run": str(args.run), "method": args.method, "edits": edits, "facts": len(rows),
        "kept_first_token": len(rows) - len(lost), "lost": len(lost),
        "lost_by_class": dict(collections.Counter(r["class_now"] for r in lost)),
        "unedited_answers_by_class": dict(collections.Counter(r["class_before"] for r in rows)),
        "lost_with_an_edited_relation": sum(r["relation_edited"] for r in lost),
        "all_with_an_edited_relation": sum(r["relation_edited"] for r in rows),
        "commonest_new_answers": [
            {"answer": answer, "facts": n, "edits_to_it": next(r["edits_to_answer_now"] for r in lost if r["answer_now"] == answer)}
            for answer, n in collections.Counter(r["answer_now"] for r in lost).most_common(15)],
        "distinct_edited_objects": len(new_objects),
    }
    loaded.write("lost", rows, summary)


if __name__ == "__main__":
    main()
