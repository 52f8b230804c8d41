"""A key-statistics corpus with subjects in it: the model's own samples interleaved with facts.

    python scripts/entity_corpus.py --dataset ../shared/datasets/counterfact-train.json \\
        --known ../shared/datasets/known_1000.json --skip 2000 --out corpus.txt

AlphaEdit's null space is the part of C = E[k kᵀ] that ordinary text seldom uses, and in the
model's own samples subject names are rare: a subject's key then lies three times more in the null
space than text's (scripts/nullspace_occupancy.py), so the projection does not protect other
subjects. The reference estimates C from Wikipedia, where every sentence names something. This
writes a plain-text corpus for `CorpusSpec(path=...)` (documents separated by blank lines, as
`read_text_corpus` reads them): the default self-sampled corpus, decoded, one sequence a
document, alternating with documents of true CounterFact facts ("The mother tongue of Danielle
Darrieux is French.", the prompt and its paraphrase, each completed with the true object).

The facts come from the records after the first `--skip` (the cases a sequential run edits) whose
subject is neither a known_1000 subject (the facts "known facts kept" scores) nor an edited case's,
so the statistics never see the subjects the evaluation reads.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.editing.stats import CorpusSpec, sample_token_corpus

logger = logging.getLogger("entity_corpus")

FACTS_PER_DOCUMENT = 12  # ~12 sentences of ~10 tokens: a document about as long as a sampled sequence (128 tokens)


def fact_sentences(records: list[dict], skip: int, excluded: set[str]) -> list[str]:
    """Each usable record's prompt and paraphrase, completed with its true object."""
    sentences = []
    for record in records[skip:]:
        if record["subject"].strip().lower() in excluded:
            continue
        for prompt in (record["prompt"], record.get("rephrase_prompt")):
            if prompt:
                sentences.append(f"{prompt.strip()} {record['ground_truth'].strip()}.")
    return sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", required=True, type=Path, help="CounterFact, flat layout (prompt, subject, ground_truth, rephrase_prompt)")
    parser.add_argument("--known", required=True, type=Path)
    parser.add_argument("--skip", type=int, default=2000, help="records edited by the runs this corpus serves")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    for path in (args.dataset, args.known):
        if not path.is_file():
            parser.exit(2, f"error: {path}: no such file\n")
    records = json.loads(args.dataset.read_text())
    if not records or "ground_truth" not in records[0]:
        parser.exit(2, f"error: {args.dataset}: not CounterFact in the flat layout (prompt, subject, ground_truth)\n")
    excluded = {f["subject"].strip().lower() for f in json.loads(args.known.read_text())}
    excluded |= {r["subject"].strip().lower() for r in records[: args.skip]}
    sentences = fact_sentences(records, args.skip, excluded)
    facts = [" ".join(sentences[i : i + FACTS_PER_DOCUMENT]) for i in range(0, len(sentences), FACTS_PER_DOCUMENT)]

    lm = load_model(args.model)
    sampled = [lm.tokenizer.decode(row, skip_special_tokens=True) for row in sample_token_corpus(lm, CorpusSpec().n_tokens)]
    documents = [doc for pair in zip(sampled, facts) for doc in pair]
    write_text_atomic(args.out, "\n\n".join(d.replace("\n\n", "\n") for d in documents) + "\n")
    logger.info("%s: %d sampled sequences and %d fact documents (of %d sentences from %d records)",
                args.out, len(sampled), min(len(sampled), len(facts)), len(sentences), len(records) - args.skip)


if __name__ == "__main__":
    main()
