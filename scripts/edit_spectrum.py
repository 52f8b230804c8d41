"""The singular values of what a stack of edits has added to each matrix, against σ_max(W₀).

    python scripts/edit_spectrum.py --out docs/img/edit-spectrum.png \
        "ROME, 500 edits=runs/seq-smollm2-cf-2000/rome/patches:5" \
        "AlphaEdit, 1,000 edits=runs/seq-smollm2-cf-alphaedit-contexts/alphaedit/patches:10"

Each argument is LABEL=PATCH_DIR[:K] (the first K patch files of the directory, in name order: a
sequential run's first K batches). For every matrix the stack touches, the singular values of
ΔW = W − W₀ in decreasing order, the largest singular value of W₀ (PRUNE acts on the values above it:
factpatch.editing.restrain) and, dashed, ΔW's values after PRUNE with α = `--base`. One panel a
stack; the numbers also go to `--json`. The model is the patches' (`--model`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from factpatch.core.cache import atomic_path, write_text_atomic  # noqa: E402
from factpatch.core.models import load_model  # noqa: E402
from factpatch.editing.patch import PatchStack, load_patch  # noqa: E402
from factpatch.editing.restrain import restrained_singular_values  # noqa: E402

logger = logging.getLogger("edit_spectrum")


def stack_spectra(lm, files: list[Path], base: float) -> dict[str, dict]:
    """Per touched matrix: σ_max(W₀), ΔW's singular values, and the same after PRUNE."""
    stack = PatchStack(lm)
    for path in files:
        stack.apply(load_patch(path))
    out = {}
    try:
        for name, original in stack.originals.items():
            if original.dim() != 2:
                continue
            W0 = original.double()
            delta = lm.model.get_parameter(name).detach().double() - W0
            sigma_hat = float(torch.linalg.matrix_norm(W0, ord=2))
            sigma = torch.linalg.svdvals(delta)
            out[name] = {"sigma_max_original": sigma_hat, "sigma": sigma.tolist(),
                         "restrained": restrained_singular_values(sigma, sigma_hat, base).tolist()}
    finally:
        stack.revert()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="+", metavar="LABEL=DIR[:K]")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--base", type=float, default=1.2, help="PRUNE's α for the dashed lines")
    parser.add_argument("--top", type=int, default=120, help="singular values drawn per matrix")
    parser.add_argument("--out", type=Path, required=True, help="the figure (.png, .svg, .pdf)")
    parser.add_argument("--json", type=Path, default=None, help="the numbers (default: --out with .json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stacks = []
    for item in args.stacks:
        label, eq, where = item.partition("=")
        directory, _, count = where.partition(":")
        files = sorted(Path(directory).glob("*.safetensors"))
        files = files[: int(count)] if count else files
        if not eq or not files:
            parser.error(f"{item!r}: use LABEL=PATCH_DIR[:K] with patch files in PATCH_DIR")
        stacks.append((label, files))
    lm = load_model(args.model)
    spectra = {label: stack_spectra(lm, files, args.base) for label, files in stacks}

    fig, axes = plt.subplots(1, len(spectra), figsize=(5.2 * len(spectra), 3.8), squeeze=False)
    for ax, (label, matrices) in zip(axes[0], spectra.items()):
        colors = plt.cm.viridis([i / max(1, len(matrices) - 1) for i in range(len(matrices))])
        for color, (name, found) in zip(colors, matrices.items()):
            layer = name.split(".layers.")[1].split(".")[0] if ".layers." in name else name
            rank = range(1, min(args.top, len(found["sigma"])) + 1)
            ax.plot(rank, found["sigma"][: len(rank)], color=color, label=f"layer {layer}")
            if any(r < s for r, s in zip(found["restrained"], found["sigma"])):
                ax.plot(rank, found["restrained"][: len(rank)], color=color, linestyle="--", linewidth=1)
            ax.axhline(found["sigma_max_original"], color=color, linestyle=":", linewidth=1)
        ax.set_title(label)
        ax.set_xlabel("singular value of ΔW, by rank")
        ax.set_ylabel("σ")
        ax.legend(fontsize=8)
    fig.suptitle(f"What the edits added to each matrix (solid), σ_max(W₀) (dotted), after PRUNE α={args.base} (dashed)",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format=args.out.suffix.lstrip("."), dpi=150)
    write_text_atomic(args.json or args.out.with_suffix(".json"), json.dumps(spectra) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
