"""AlphaEdit's null space at each edited layer under a rule: its rank and the share of tr C it holds.

    python scripts/nullspace_share.py [--model smollm2-135m] [--set alphaedit.nullspace_threshold=0.02] \
        [--corpus FILE --corpus-tokens N] [--json F]

The rule is AlphaEdit's settings on the model (factpatch's default: the smallest directions holding
10 % of tr C; `--set alphaedit.nullspace_threshold=T`: the reference's absolute threshold). C is the
cached key statistics of each layer (computed as an edit would if absent; from `--corpus` as
`factpatch eval --sequential --corpus` estimates them). Prints one line a layer
and, with --json, writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from factpatch.cli import add_corpus_options, corpus_spec
from factpatch.core.cache import write_text_atomic
from factpatch.core.errors import FactpatchError
from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params, parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--set", action="append", default=[], metavar="alphaedit.KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    add_corpus_options(parser)
    args = parser.parse_args()
    try:
        corpus = corpus_spec(args)
    except FactpatchError as exc:
        parser.exit(2, f"error: {exc}\n")
    lm = load_model(args.model)
    params = method_params(lm, "alphaedit", parse_overrides(args.set).get("alphaedit", {}))
    editor = make_editor(lm, "alphaedit", params, progress=False, corpus=corpus)
    rows = []
    for layer in params.layers:
        C = editor.C(layer).double()
        P = editor.P(layer).double()
        rows.append({"layer": layer, "dim": C.shape[0], "rank": int(round(float(torch.trace(P)))),
                     "share_of_trace": round(float(torch.trace(P @ C) / torch.trace(C)), 4), "rule": params.rule(),
                     "corpus": corpus.record()})
        print(f"layer {layer}: rank {rows[-1]['rank']} of {C.shape[0]}, {100 * rows[-1]['share_of_trace']:.1f} % of tr C")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
