"""How much of each earlier batch's z is still unwritten as a sequential MEMIT/AlphaEdit stack grows.

    python scripts/replay_residuals.py runs/seq-smollm2-cf-memit-replay memit [--edits 2000]

For every t up to the stack's length, applies the first t patches of METHOD's stack
(runs/…/METHOD/patches/, in order; `factpatch eval rebuild` writes them from the saved z) and reads,
for every batch b < t, the bare prompts' residual stream at the last subject token after layer L
(the top of the edit range, where z lives; the read replay_edits' solve makes). Each edit's
**unwritten share** is ‖z − h_L‖ now over ‖z − h_L‖ on the unedited model: 0 where the stack
delivers z exactly, 1 as far from z as before the edit; and its **written share along z**,
the part of the way from h_L⁰ to z that h_L has come in z's direction (the two differ where later
batches push h_L off in other directions). Batch b's mean at t = b + 1 is what its own
solve wrote (MEMIT's λ C keeps a part unwritten on purpose); its later values are how the batches
after it wear it down — or, with replay_edits, write the rest of it in.

The z come from `METHOD/targets/NNNN.safetensors`, the requests from the patches. Writes
`replay-residuals-METHOD-EDITS.json` (two matrices, row t − 1, column b, the mean shares; and
each batch's median unwritten share at the end) in the run directory, and beside it `.jsonl`, one
line an edit: its batch, subject, prompt and both shares at the end. A few minutes on a CPU: run it alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch
from safetensors.torch import load_file

from factpatch.core.cache import write_text_atomic
from factpatch.core.hooks import act_name
from factpatch.core.models import load_model
from factpatch.editing.memit import SubjectReader
from factpatch.editing.patch import PatchStack, load_patch
from factpatch.editing.request import EditRequest

logger = logging.getLogger("replay_residuals")


@torch.no_grad()
def subject_states(lm, requests: list[EditRequest], layer: int) -> torch.Tensor:
    """h_L at the last subject token of each request's bare prompt, (n, d_model), on the model as it is now."""
    name = act_name("resid_post", layer)
    return SubjectReader(lm, requests, [""]).read([name])[name][:, 0].cpu()


def shares(Z: torch.Tensor, H0: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per edit (n,): the unwritten share ‖z − h_L‖ / ‖z − h_L⁰‖, and the written share along the
    edit's direction, (h_L − h_L⁰)·(z − h_L⁰) / ‖z − h_L⁰‖² (1 where z is reached along it, 0 where
    h_L has not moved towards z; a state pushed off in other directions has a large unwritten
    share whatever its written one)."""
    wanted = Z - H0  # (n, d_model)
    return (Z - H).norm(dim=-1) / wanted.norm(dim=-1), ((H - H0) * wanted).sum(-1) / wanted.pow(2).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("method")
    parser.add_argument("--edits", type=int, default=None, help="edits applied at the end (default: every patch)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.run / "config.json").exists():
        parser.error(f"{args.run} is not a result directory of eval --sequential (no config.json)")
    config = json.loads((args.run / "config.json").read_text())
    paths = sorted((args.run / args.method / "patches").glob("*.safetensors"))
    n = len(paths) if args.edits is None else args.edits // int(config["batch_size"])
    if n < 1 or n > len(paths):
        parser.error(f"{args.run}/{args.method} has {len(paths)} patches")
    lm = load_model(config["model"])
    if lm.fingerprint != config["fingerprint"]:
        parser.error("the model's weights are not the run's")
    patches = [load_patch(p) for p in paths[:n]]
    layer = int(patches[0].layers[-1])
    batches = []
    for b, patch in enumerate(patches):
        Z = load_file(str(args.run / args.method / "targets" / f"{b:04d}.safetensors"))["Z"]
        requests = [EditRequest.from_dict(r) for r in patch.requests]
        if Z.shape[0] != len(requests):
            parser.error(f"batch {b}: {Z.shape[0]} z for {len(requests)} requests")
        batches.append((requests, Z.float(), subject_states(lm, requests, layer)))  # h_L⁰: the unedited model's
    unwritten: list[list[float]] = []
    written: list[list[float]] = []
    stack = PatchStack(lm)
    try:
        for t, patch in enumerate(patches, start=1):
            stack.apply(patch)
            now = [shares(Z, H0, subject_states(lm, requests, layer)) for requests, Z, H0 in batches[:t]]
            unwritten.append([round(float(u.mean()), 4) for u, _ in now])
            written.append([round(float(w.mean()), 4) for _, w in now])
            logger.info("after %d batches: oldest unwritten %.3f, written along z %.3f; newest %.3f, %.3f",
                        t, unwritten[-1][0], written[-1][0], unwritten[-1][-1], written[-1][-1])
        final = [round(statistics.median(u.tolist()), 4) for u, _ in now]
        per_edit = [{"batch": b, "subject": r.subject, "prompt": r.prompt, "unwritten": round(float(u_i), 4),
                     "written_along_z": round(float(w_i), 4)}
                    for b, ((requests, _, _), (u, w)) in enumerate(zip(batches, now))
                    for r, u_i, w_i in zip(requests, u, w)]
    finally:
        stack.revert()
    out = args.run / f"replay-residuals-{args.method}-{n * int(config['batch_size'])}.json"
    write_text_atomic(out, json.dumps({
        "run": str(args.run), "method": args.method, "layer": layer, "batches": n,
        "mean_unwritten_share": unwritten, "mean_written_share_along_z": written,
        "median_unwritten_share_at_end": final,
    }, indent=1) + "\n")
    write_text_atomic(out.with_suffix(".jsonl"), "".join(json.dumps(row) + "\n" for row in per_edit))
    logger.info("wrote %s and its .jsonl (every edit's shares at the end)", out)


if __name__ == "__main__":
    main()
