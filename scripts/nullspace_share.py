"""AlphaEdit's null space at each edited layer under a rule: its rank and the share of tr C it holds.

    python scripts/nullspace_share.py [--model smollm2-135m] [--set alphaedit.nullspace_threshold=0.02] [--json F]

The rule is AlphaEdit's settings on the model (factpatch's default: the smallest directions holding
10 % of tr C; `--set alphaedit.nullspace_threshold=T`: the reference's absolute threshold). C is the
cached key statistics of each layer (computed as an edit would if absent). Prints one line a layer
and, with --json, writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params, parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--set", action="append", default=[], metavar="alphaedit.KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    lm = load_model(args.model)
    params = method_params(lm, "alphaedit", parse_overrides(args.set).get("alphaedit", {}))
    editor = make_editor(lm, "alphaedit", params, progress=False)
    rows = []
    for layer in params.layers:
        C = editor.C(layer).double()
        P = editor.P(layer).double()
        rows.append({"layer": layer, "dim": C.shape[0], "rank": int(round(float(torch.trace(P)))),
                     "share_of_trace": round(float(torch.trace(P @ C) / torch.trace(C)), 4), "rule": params.rule()})
        print(f"layer {layer}: rank {rows[-1]['rank']} of {C.shape[0]}, {100 * rows[-1]['share_of_trace']:.1f} % of tr C")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
