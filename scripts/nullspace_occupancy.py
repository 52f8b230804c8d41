"""How full AlphaEdit's null space gets over a sequential run, from the keys its patches carry.

    python scripts/nullspace_occupancy.py runs/seq-smollm2-cf-2000 [--method alphaedit] [--every 500]

For each edited layer l (the run's AlphaEdit stack, `<run>/<method>/patches/`, whose patches carry
every request's key k at l as `keys.<l>`), with P_l = U₀U₀ᵀ the null-space projector the run used
(from the cached key statistics C_l and the patch's rule):

- `text_share`: tr(P C) / tr C, the share of ordinary text's key energy in the null space (≤ the
  rule's 10 % by construction);
- `edit_share`: mean ‖P k‖² / ‖k‖² over the edited subjects' keys: how much of a subject's key
  lies in the directions AlphaEdit may write, against text's share;
- after every `--every` edits, `filled`: the dimensions of the null space that carry 90 % of the
  projected keys' energy so far (U₀ᵀ K_p), over its rank; and `overlap`: the share of the next
  batch's projected key energy that falls in those dimensions — how much of what the next batch
  may write is already used by earlier edits (the K_p term then has to trade the two off);
- with `--known-lost FILE` (a `known-lost-<method>-<edits>.jsonl` of scripts/known_facts_lost.py):
  mean ‖P k‖² / ‖k‖² over the keys of the known facts' subjects (the unedited model's, at the
  subject's last token), for the facts the edits left and for those they took.

Prints a table and writes `<run>/nullspace-<method>.json` (`-<corpus name>` with `--corpus-path`:
the null space another C would have given, for the same keys). C comes from the cache, or is
estimated as an edit would.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.editing.alphaedit import AlphaEditParams, projector
from factpatch.editing.stats import KEYS_ATTACHMENT
from factpatch.core.hooks import act_name
from factpatch.editing.patch import load_patch
from factpatch.editing.request import EditRequest
from factpatch.editing.values import build_contexts, states_at_subject
from factpatch.editing.stats import CorpusSpec, key_second_moments

logger = logging.getLogger("nullspace_occupancy")

ENERGY = 0.9  # the dimensions that carry this share of the projected keys' energy count as filled


def filled_basis(projected: torch.Tensor) -> torch.Tensor:
    """The left singular vectors of `projected` (r, N) that carry ENERGY of its energy: (r, m)."""
    U, S, _ = torch.linalg.svd(projected, full_matrices=False)
    energy = torch.cumsum(S**2, 0) / (S**2).sum()
    m = int(torch.searchsorted(energy, torch.tensor(ENERGY, dtype=energy.dtype))) + 1
    return U[:, :m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--method", default="alphaedit")
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--known-lost", type=Path, help="known-lost-<method>-<edits>.jsonl: split the known facts' keys by kept/lost")
    parser.add_argument("--known", type=Path, help="the known_1000 file (the facts' subjects), with --known-lost")
    parser.add_argument("--corpus-path", type=Path, help="the null space of C from this text file instead of the run's (scripts/entity_corpus.py)")
    parser.add_argument("--corpus-tokens", type=int, default=CorpusSpec().n_tokens)
    args = parser.parse_args()
    if (args.known_lost is None) != (args.known is None):
        parser.exit(2, "error: --known-lost and --known go together\n")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    for path in (args.run / "config.json", args.known_lost, args.known, args.corpus_path):
        if path is not None and not path.is_file():
            parser.exit(2, f"error: {path}: no such file\n")
    config = json.loads((args.run / "config.json").read_text())
    if args.method not in config.get("hparams", {}):
        parser.exit(2, f"error: {args.run} has no {args.method!r} run\n")
    patch_files = sorted((args.run / args.method / "patches").glob("*.safetensors"))
    if not patch_files:
        parser.exit(2, f"error: no patches under {args.run / args.method / 'patches'}\n")
    patches = [load_patch(path) for path in patch_files]
    # config.json holds the settings as JSON: lists back to the dataclass's tuples
    stored = config["hparams"][args.method]
    params = AlphaEditParams(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                                for k, v in stored.items()})
    lm = load_model(config["model"])
    corpus = CorpusSpec(path=args.corpus_path, n_tokens=args.corpus_tokens)
    C = key_second_moments(lm, list(params.layers), corpus, progress=False)

    out: dict = {"run": str(args.run), "method": args.method, "energy": ENERGY, "corpus": corpus.record(),
                 "layers": {}}
    known_keys, kept = None, None
    if args.known_lost is not None:
        facts = [json.loads(line) for line in args.known_lost.read_text().splitlines() if line.strip()]
        subjects = {str(f["known_id"]): f["subject"] for f in json.loads(args.known.read_text())}
        requests = [EditRequest.from_text(f["prompt"], subjects[f["id"]], f["target"]) for f in facts]
        ctx = build_contexts(lm, requests, [""], None)
        names = [act_name("mlp_key", layer) for layer in params.layers]
        known_keys = states_at_subject(lm, ctx, names, names[-1])  # name -> (facts, d)
        kept = torch.tensor([bool(f["kept"]) for f in facts])
        out["known_lost"] = {"file": str(args.known_lost), "kept": int(kept.sum()), "lost": int((~kept).sum())}
    for layer in params.layers:
        P, rank = projector(lm, layer, C[layer], corpus, params, None)
        P64, C64 = P.to(torch.float64), C[layer].to(torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(P64)
        U0 = eigenvectors[:, eigenvalues > 0.5]  # (d, r)
        keys = [p.attachments[KEYS_ATTACHMENT.format(layer=layer)].to(torch.float64) for p in patches]  # (d, n) each
        K = torch.cat(keys, dim=1)  # (d, N)
        row = {
            "rank": rank,
            "text_share": float(torch.trace(P64 @ C64) / torch.trace(C64)),
            "edit_share": float(((P64 @ K).pow(2).sum(0) / K.pow(2).sum(0)).mean()),
            "checkpoints": [],
        }
        done = 0
        for b, batch in enumerate(keys[:-1]):
            done += batch.shape[1]
            if done % args.every:
                continue
            basis = filled_basis(U0.T @ K[:, :done])  # (r, m)
            following = U0.T @ keys[b + 1]  # (r, n)
            overlap = float((basis.T @ following).pow(2).sum() / following.pow(2).sum())
            row["checkpoints"].append({"edits": done, "filled": basis.shape[1] / rank, "overlap": overlap})
        if known_keys is not None:
            k = known_keys[act_name("mlp_key", layer)].to(torch.float64).T  # (d, facts)
            share = (P64 @ k).pow(2).sum(0) / k.pow(2).sum(0)  # (facts,)
            row["known_kept_share"], row["known_lost_share"] = float(share[kept].mean()), float(share[~kept].mean())
        out["layers"][str(layer)] = row

    print(f"{'layer':>5} {'rank':>5} {'text':>6} {'edits':>6}  filled / overlap after " +
          ", ".join(str(c["edits"]) for c in next(iter(out["layers"].values()))["checkpoints"]))
    for layer, row in out["layers"].items():
        cells = "  ".join(f"{c['filled']:.2f}/{c['overlap']:.2f}" for c in row["checkpoints"])
        known = f"  known kept {row['known_kept_share']:.3f}, lost {row['known_lost_share']:.3f}" if "known_kept_share" in row else ""
        print(f"{layer:>5} {row['rank']:>5} {row['text_share']:>6.3f} {row['edit_share']:>6.3f}  {cells}{known}")
    name = f"nullspace-{args.method}" + (f"-{args.corpus_path.stem}" if args.corpus_path is not None else "")
    write_text_atomic(args.run / f"{name}.json", json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
