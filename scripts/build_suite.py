"""Build factpatch's built-in evaluation suite (src/factpatch/data/counterfact-builtin.json).

    FACTPATCH_CACHE=/tmp/fpcache python scripts/build_suite.py \
        --counterfact ../shared/datasets/counterfact-train.json --size 300

How the suite is made (deterministic for a given source file and models):

1. Candidates: the flattened CounterFact records from index `--skip` on (the first records are left
   to `factpatch eval --dataset counterfact:...` runs, so the suite does not repeat them), in a
   seeded shuffle, with at most `--per-relation` records of any one relation template so that no
   relation dominates.
2. Known facts: every embedded model scores the rewrite prompt with the true object o^c and the new
   object o* (mean token log-probability, as the metrics compare them); a case is kept only if
   *every* model prefers o^c — so before editing each model gets ES = 0 on the whole suite and an
   edit has something to overturn. Candidates are scored in chunks until `--size` cases are kept.
3. Each kept case is written in the original CounterFact layout, enriched from the whole source
   file: paraphrase prompts = the record's paraphrase, plus the same without its unrelated lead-in
   sentence when it has one; neighbourhood prompts = the record's locality prompt plus up to 9 rewrite
   prompts of other records with the same relation template and the same true object;
   attribute prompts = up to 10 rewrite prompts of other records whose true object is o* (same
   template first); generation prompts = the bare paraphrase and "{subject} is" (not the rewrite
   prompt, whose continuation the edit is trained on).
   Each record keeps its source case_id and the models' scores under "builtin".
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from factpatch.evaluation.metrics import score_targets
from factpatch.core.models import EMBEDDED, load_model

logger = logging.getLogger("build_suite")
OUT = Path(__file__).resolve().parents[1] / "src" / "factpatch" / "data" / "counterfact-builtin.json"


def template(record: dict) -> str:
    return record["prompt"].replace(record["subject"], "{}", 1)


def bare_paraphrase(record: dict) -> str:
    """The paraphrase without the unrelated sentence CounterFact puts before some of them."""
    text, subject = record["rephrase_prompt"], record["subject"]
    at = text.find(subject)
    cut = text.rfind(". ", 0, at) if at > 0 else -1
    return text[cut + 2 :] if cut >= 0 else text


def candidates(records: list[dict], skip: int, per_relation: int, seed: int) -> list[dict]:
    pool = records[skip:]
    random.Random(seed).shuffle(pool)
    counts: Counter[str] = Counter()
    out = []
    for record in pool:
        key = template(record)
        if counts[key] < per_relation:
            counts[key] += 1
            out.append(record)
    return out


def known_scores(lm, chunk: list[dict]) -> list[dict]:
    prompts = [r["prompt"] for r in chunk for _ in range(2)]
    targets = [t for r in chunk for t in (r["ground_truth"], r["target_new"])]
    scores = score_targets(lm, prompts, targets, batch_size=64)
    return [
        {"true": round(scores[2 * i].mean_log_prob, 4), "new": round(scores[2 * i + 1].mean_log_prob, 4)}
        for i in range(len(chunk))
    ]


def to_original(record: dict, records: list[dict], by_truth: dict, scores: dict) -> dict:
    key, subject = template(record), record["subject"]
    true, new = record["ground_truth"], record["target_new"]
    paraphrases = list(dict.fromkeys([record["rephrase_prompt"], bare_paraphrase(record)]))
    neighbours = [record["locality_prompt"]]
    for other in by_truth[(key, true)]:
        if other["subject"] != subject and len(neighbours) < 10:
            neighbours.append(other["prompt"])
    attributes = [o["prompt"] for o in by_truth[(key, new)] if o["subject"] != subject]
    attributes += [o["prompt"] for o in by_truth[("*", new)] if o["subject"] != subject and template(o) != key]
    return {
        "case_id": record["case_id"],
        "requested_rewrite": {
            "prompt": key,
            "subject": subject,
            "target_new": {"str": new},
            "target_true": {"str": true},
            "relation_id": key,
        },
        "paraphrase_prompts": paraphrases,
        "neighborhood_prompts": list(dict.fromkeys(neighbours)),
        "attribute_prompts": list(dict.fromkeys(attributes))[:10],
        # not the rewrite prompt: the edit was trained on its continuation (factpatch.evaluation.data)
        "generation_prompts": list(dict.fromkeys([bare_paraphrase(record), f"{subject} is"])),
        "builtin": {"source": "counterfact-train.json", "scores": scores},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counterfact", type=Path, default=Path("../shared/datasets/counterfact-train.json"))
    parser.add_argument("--models", default=",".join(EMBEDDED))
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--skip", type=int, default=5000, help="leave the first records of the source alone")
    parser.add_argument("--per-relation", type=int, default=12)
    parser.add_argument("--chunk", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    records = json.loads(args.counterfact.read_text())
    by_truth: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        by_truth[(template(r), r["ground_truth"])].append(r)
        by_truth[("*", r["ground_truth"])].append(r)
    pool = candidates(records, args.skip, args.per_relation, args.seed)
    models = [load_model(name) for name in args.models.split(",")]
    kept: list[dict] = []
    scored = 0
    for start in range(0, len(pool), args.chunk):
        chunk = pool[start : start + args.chunk]
        per_model = {lm.name: known_scores(lm, chunk) for lm in models}
        scored += len(chunk)
        for i, record in enumerate(chunk):
            scores = {name: values[i] for name, values in per_model.items()}
            if all(s["true"] > s["new"] for s in scores.values()):
                kept.append(to_original(record, records, by_truth, scores))
        logger.info("scored %d candidates, kept %d", scored, len(kept))
        if len(kept) >= args.size:
            break
    kept = sorted(kept[: args.size], key=lambda r: r["case_id"])
    if len(kept) < args.size:
        logger.warning("only %d cases are known by every model", len(kept))
    args.out.write_text(json.dumps(kept, indent=1, ensure_ascii=False) + "\n")
    logger.info(
        "wrote %d cases (%d relation templates, from %d candidates scored) to %s",
        len(kept), len({r["requested_rewrite"]["prompt"] for r in kept}), scored, args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
