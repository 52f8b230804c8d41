"""Why one ROME edit is as large as it is: each edit's ‖Δ‖/‖W₀‖ split into four factors.

    python scripts/rome_edit_scale.py runs/seq-gemma3-cf-2000-rome-6ctx [--edits 100]

A ROME patch stores Δ = Λ (C⁻¹k*)ᵀ with Λ = (v* − W k*) / (k*ᵀC⁻¹k*) (editing.rome.rank_one_update),
so with the key statistics C the run used, k* = C · (C⁻¹k*) comes back exactly, and with it, for
edit i applied on W = W₀ + Δ₁ + … + Δᵢ₋₁ (ROME's layer l*; its key k* depends on no edited weight):

    ‖Δ‖/‖W₀‖ = ‖δ‖/‖W k*‖ · ‖W k*‖/‖W₀k*‖ · ‖W₀k*‖/(‖W₀‖ ‖k*‖) · ‖C⁻¹k*‖ ‖k*‖ / (k*ᵀC⁻¹k*)
               the write     the drift       W₀'s gain on k*       C⁻¹'s inflation (≥ 1; 1 when
               (≤ the clamp, (what earlier   (against its           k* is an eigenvector of C)
               4 by default) edits did to    Frobenius norm)
                             k*'s output)

where δ = v* − W k* = Δ k*. The first factor is what v*'s optimisation asked for (its clamp is
relative to ‖W k*‖, so it grows with the drift), the last what the closed form pays for keeping
every other key's output fixed. The drift comes from the earlier edits' spill onto later keys:
edit i changes key j's output by δᵢ · kᵢᵀC⁻¹kⱼ / kᵢᵀC⁻¹kᵢ, so the script also gives the mean cosine
between two edits' keys in C⁻¹'s inner product (kᵢᵀC⁻¹kⱼ / √(kᵢᵀC⁻¹kᵢ · kⱼᵀC⁻¹kⱼ), over all
pairs) beside their plain cosine. Prints each factor's median and
quartiles over the first `--edits` edits and writes `<run>/rome-edit-scale-<edits>.json`; the
first edit's recovered k* is checked against the bare prompt's key (their cosine; k* is the mean
over the contexts, so close to but not exactly 1).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.hooks import act_name
from factpatch.core.models import load_model
from factpatch.editing.patch import load_patch
from factpatch.editing.request import EditRequest
from factpatch.editing.rome import projection_weight
from factpatch.editing.stats import CorpusSpec, key_second_moments
from factpatch.editing.values import build_contexts, states_at_subject

def quartiles(values: torch.Tensor) -> dict:
    q = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=values.dtype))
    return {"q1": float(q[0]), "median": float(q[1]), "q3": float(q[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--edits", type=int, default=100, help="the first N edits of the stack")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.run / "config.json").is_file():
        parser.exit(2, f"error: {args.run / 'config.json'}: no such file\n")
    if args.edits < 1:
        parser.exit(2, "error: --edits must be at least 1\n")
    config = json.loads((args.run / "config.json").read_text())
    if config.get("hparams", {}).get("rome", {}).get("layer") is None:
        parser.exit(2, f"error: {args.run} has no ROME run with its layer recorded\n")
    corpus = config.get("corpus", {})
    if corpus.get("corpus") != "self-sampled" or corpus.get("n_tokens") != CorpusSpec().n_tokens:
        parser.exit(2, f"error: {args.run} used other key statistics than the default; this script reads only the default\n")
    layer = config["hparams"]["rome"]["layer"]

    patches = [load_patch(p) for p in sorted((args.run / "rome" / "patches").glob("*.safetensors"))]
    deltas = [(d, request) for p in patches for d, request in zip(p.deltas, p.meta["requests"])]
    if len(deltas) < args.edits:
        parser.exit(2, f"error: {args.run} holds {len(deltas)} ROME edits, fewer than --edits {args.edits}\n")
    deltas = deltas[: args.edits]

    lm = load_model(config["model"])
    C = key_second_moments(lm, [layer], CorpusSpec(), progress=False)[layer].to(torch.float64)
    W0 = projection_weight(lm, layer).detach().to(torch.float64)  # (d_out, d_in)
    W = W0.clone()
    rows = {"write": [], "drift": [], "gain": [], "inflation": [], "delta": []}
    keys, c_inv_keys = [], []
    for d, _ in deltas:
        Lambda, c_inv_k = d.left.to(torch.float64), d.right.to(torch.float64)  # (d_out,), (d_in,)
        k = C @ c_inv_k  # k* (d_in,)
        Wk = W @ k
        write = Lambda * (c_inv_k @ k)  # δ = Δ k* (d_out,)
        rows["write"].append(float(write.norm() / Wk.norm()))
        W0k = W0 @ k
        rows["drift"].append(float(Wk.norm() / W0k.norm()))
        rows["gain"].append(float(W0k.norm() / (W0.norm() * k.norm())))
        rows["inflation"].append(float(c_inv_k.norm() * k.norm() / (c_inv_k @ k)))
        rows["delta"].append(float(Lambda.norm() * c_inv_k.norm() / W0.norm()))
        keys.append(k)
        c_inv_keys.append(c_inv_k)
        W += torch.outer(Lambda, c_inv_k)

    K, CinvK = torch.stack(keys, 1), torch.stack(c_inv_keys, 1)  # (d_in, n) each
    gram = K.T @ CinvK  # (n, n): kᵢᵀC⁻¹kⱼ
    scale = gram.diagonal().sqrt()
    whitened = gram / torch.outer(scale, scale)
    plain = (K / K.norm(dim=0)).T @ (K / K.norm(dim=0))
    off = ~torch.eye(len(keys), dtype=torch.bool)
    pair_cosines = {"whitened": float(whitened[off].mean()), "plain": float(plain[off].mean())}

    first = deltas[0][1]
    request = EditRequest.from_text(first["prompt"].replace("{}", first["subject"]), first["subject"], first["target_new"])
    key_name = act_name("mlp_key", layer)
    contexts = build_contexts(lm, [request], [""], None)
    bare = states_at_subject(lm, contexts, [key_name], key_name)[key_name][0].to(torch.float64)
    cosine = float(bare @ keys[0] / (bare.norm() * keys[0].norm()))

    out = {"run": str(args.run), "model": config["model"], "layer": layer, "edits": args.edits,
           "first_key_cosine_to_bare_prompt": cosine, "key_pair_cosine": pair_cosines,
           "factors": {name: quartiles(torch.tensor(values, dtype=torch.float64)) for name, values in rows.items()},
           "per_edit": rows}
    print(f"{config['model']}, layer {layer}, first {args.edits} ROME edits of {args.run} (median, quartiles):")
    for name, label in (("delta", "‖Δ‖/‖W₀‖"), ("write", "‖δ‖/‖W k*‖"), ("drift", "‖W k*‖/‖W₀k*‖"),
                        ("gain", "‖W₀k*‖/(‖W₀‖‖k*‖)"),
                        ("inflation", "C⁻¹ inflation")):
        f = out["factors"][name]
        print(f"  {label:<22} {f['median']:.4g}  ({f['q1']:.4g} to {f['q3']:.4g})")
    print(f"  two edits' keys, mean cosine: {pair_cosines['whitened']:.3f} in C⁻¹'s inner product, {pair_cosines['plain']:.3f} plain")
    print(f"  the first edit's k* against the bare prompt's key: cosine {cosine:.3f}")
    write_text_atomic(args.run / f"rome-edit-scale-{args.edits}.json", json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
