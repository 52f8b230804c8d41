"""One restoration, written plainly: the definition the scheduled engine (engine.py) is tested
against. A whole forward pass of the corrupted input with plain hooks — no caches, no batching,
no shortcuts — as the paper's `trace_with_patch` does it."""

from __future__ import annotations

import torch

from ..core.hooks import act_name, body, hooks, unembed
from ..core.models import LoadedModel
from .engine import Prepared
from .schedule import Restore
from .settings import HOOK_KIND, layer_window


@torch.no_grad()
def restored_prob(lm: LoadedModel, prep: Prepared, restore: Restore, sample: int) -> float:
    """P(target) for one restoration and one noise sample."""
    L = lm.n_layers
    # the corrupted embedding (this sample's noise) enters block 0
    fns = {act_name("resid_pre", 0): lambda t, *, hook: prep.corrupted_resid[0][sample : sample + 1]}

    def put(value_of):
        def fn(t, *, hook):
            t = t.clone()
            for i in restore.tokens:
                t[0, i] = value_of(hook, i)
            return t
        return fn

    def clean(hook, i):
        return prep.clean[hook][0, i]

    def corrupted(hook, i):
        return prep.corrupted[hook][sample, i]

    if restore.kind == "hidden":  # the residual stream after block l, at the restored tokens
        fns[act_name("resid_post", restore.layer)] = put(clean)
        if restore.sever:  # later MLP (attention) outputs there held at their corrupted values
            for l in range(restore.layer + 1, L):
                fns[act_name(HOOK_KIND[restore.sever], l)] = put(corrupted)
    else:  # the MLP (attention) output in every layer of the window
        for l in layer_window(restore.layer, L, prep.window):
            fns[act_name(HOOK_KIND[restore.kind], l)] = put(clean)
    with hooks(lm, fns):
        hidden = body(lm)(input_ids=prep.input_ids, use_cache=False).last_hidden_state[:, -1]
    return float(torch.softmax(unembed(lm, hidden), dim=-1)[0, prep.target_id])
