"""Named hook points for reading and patching activations, in TransformerLens style.

Hook names (built by `act_name`, translated to Hugging Face modules by the model's adapter):

    blocks.{l}.hook_resid_pre    [batch, pos, d_model]  input of block l
    blocks.{l}.hook_resid_mid    [batch, pos, d_model]  between attention and MLP (sequential blocks)
    blocks.{l}.hook_resid_post   [batch, pos, d_model]  output of block l
    blocks.{l}.hook_attn_out     [batch, pos, d_model]  attention output added to the residual
    blocks.{l}.mlp.hook_post     [batch, pos, d_mlp]    input of W_proj: ROME's key k
    blocks.{l}.hook_mlp_out      [batch, pos, d_model]  output of W_proj: ROME's value v

Every hook function has one signature, ``fn(tensor, *, hook) -> tensor | None``; returning a tensor
replaces the activation. Hooks exist only inside the `hooks` context manager and are removed in
``finally``, so a failed pass never leaves one behind.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import nn

from .errors import FactpatchError
from .models import LoadedModel

_KINDS = {
    "resid_pre": ("blocks.{l}.hook_resid_pre", "block", "input"),
    "resid_mid": ("blocks.{l}.hook_resid_mid", "mlp_sublayer", "input"),
    "resid_post": ("blocks.{l}.hook_resid_post", "block", "output"),
    "attn_out": ("blocks.{l}.hook_attn_out", "attn", "output"),
    "mlp_key": ("blocks.{l}.mlp.hook_post", "mlp_out", "input"),
    "mlp_out": ("blocks.{l}.hook_mlp_out", "mlp_out", "output"),
}
_NAME_TO_KIND = {template.replace("{l}", "(\\d+)"): kind for kind, (template, _, _) in _KINDS.items()}


class HookFn(Protocol):
    def __call__(self, tensor: torch.Tensor, *, hook: str) -> torch.Tensor | None: ...


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (e.g. once the keys of layer l are read)."""


def act_name(kind: str, layer: int) -> str:
    """Hook name for an activation kind at a layer.

    >>> act_name("mlp_key", 8)
    'blocks.8.mlp.hook_post'
    >>> act_name("resid_post", 0)
    'blocks.0.hook_resid_post'
    """
    if kind not in _KINDS:
        raise FactpatchError(f"unknown activation kind {kind!r}: use one of {', '.join(_KINDS)}")
    return _KINDS[kind][0].format(l=layer)


def resolve(lm: LoadedModel, name: str) -> tuple[nn.Module, str]:
    """The module a hook name lives on, and whether it reads that module's input or output."""
    for pattern, kind in _NAME_TO_KIND.items():
        match = re.fullmatch(pattern.replace(".", "\\."), name)
        if match:
            layer = lm.check_layer(int(match.group(1)))
            _, where, side = _KINDS[kind]
            if where == "mlp_sublayer" and not lm.adapter.sequential:
                raise FactpatchError(f"{lm.name} runs attention and MLP in parallel: it has no {name}")
            path = {
                "block": lm.adapter.block(layer),
                "attn": lm.adapter.attn_path(layer),
                "mlp_out": lm.adapter.mlp_out_path(layer),
                "mlp_sublayer": f"{lm.adapter.block(layer)}.{(lm.adapter.mlp_sublayer or ('',))[0]}",
            }[where]
            return lm.module(path), side
    raise FactpatchError(f"unknown hook point {name!r}")


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _replace_first(value, tensor):
    return (tensor, *value[1:]) if isinstance(value, tuple) else tensor


@contextlib.contextmanager
def hooks(lm: LoadedModel, fns: dict[str, HookFn]) -> Iterator[None]:
    """Attach hook functions by name for the duration of the block."""
    handles = []
    try:
        for name, fn in fns.items():
            module, side = resolve(lm, name)
            if side == "output":

                def on_output(mod, args, output, fn=fn, name=name):
                    new = fn(_first(output), hook=name)
                    return None if new is None else _replace_first(output, new)

                handles.append(module.register_forward_hook(on_output))
            else:

                def on_input(mod, args, kwargs, fn=fn, name=name):
                    if args:
                        new = fn(args[0], hook=name)
                        return None if new is None else ((new, *args[1:]), kwargs)
                    new = fn(kwargs["hidden_states"], hook=name)
                    return None if new is None else (args, {**kwargs, "hidden_states": new})

                handles.append(module.register_forward_pre_hook(on_input, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_with_cache(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    names: list[str],
    stop_after: str | None = None,
    **forward_kwargs,
) -> dict[str, torch.Tensor]:
    """Run the model and return the named activations (detached). With `stop_after`, the pass ends
    as soon as that activation is read, so only the layers up to it run. `forward_kwargs` go to the
    model body (attention_mask, position_ids, past_key_values, ...)."""
    cache: dict[str, torch.Tensor] = {}

    wanted = list(dict.fromkeys(names + ([stop_after] if stop_after else [])))

    def save(tensor, *, hook):
        cache[hook] = tensor.detach()
        # once everything asked for is read, whichever came last (a `stop_after` that runs before
        # another name must not let the pass run on to the last layer)
        if stop_after is not None and all(n in cache for n in wanted):
            raise StopForward

    with torch.no_grad(), hooks(lm, {name: save for name in wanted}):
        try:
            body(lm)(input_ids=input_ids, **{"use_cache": False, **forward_kwargs})
        except StopForward:
            pass
    missing = [n for n in names if n not in cache]
    if missing:
        raise FactpatchError(f"hook points never ran: {', '.join(missing)}")
    return {name: cache[name] for name in names}


def body(lm: LoadedModel) -> nn.Module:
    """The transformer without its LM head (returns final-normed hidden states)."""
    return lm.module(lm.adapter.body)


def unembed(lm: LoadedModel, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Logits for final hidden states [..., d_model] -> [..., vocab], with the model's own softcap.

    With `out` (no gradients), the logits are written into that buffer instead of a new tensor."""
    head = lm.module(lm.adapter.unembed)
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    if out is None:
        logits = head(hidden)
        return torch.tanh(logits / cap) * cap if cap else logits
    logits = torch.matmul(hidden, head.weight.t(), out=out)
    if head.bias is not None:
        logits += head.bias
    return logits.div_(cap).tanh_().mul_(cap) if cap else logits


def cache_kwarg(module: nn.Module) -> str:
    """Name of the key/value-cache argument of a model body (`cache` since transformers 5.2x,
    `past_key_values` before)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def returned_cache(output):
    """The key/value cache a forward pass returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class _Passthrough(nn.Module):
    """Stands in for a skipped block: returns its input, or a fixed tensor if one is given."""

    def __init__(self, original: nn.Module, replacement: torch.Tensor | None = None):
        super().__init__()
        self.replacement = replacement
        # Some bodies read per-layer attributes (attention type, index) from the block itself.
        for attr in ("attention_type", "layer_type", "layer_idx", "is_sliding", "sliding_window"):
            if hasattr(original, attr):
                setattr(self, attr, getattr(original, attr))

    def forward(self, *args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if self.replacement is None else self.replacement


@contextlib.contextmanager
def start_at_layer(lm: LoadedModel, layer: int, resid_pre: torch.Tensor) -> Iterator[None]:
    """Within the block, a forward pass skips blocks 0..layer-1 and starts block `layer` from the
    given residual stream `resid_pre` [batch, pos, d_model] (e.g. cached from an earlier pass).

    The embedding, positions and masks are still built by the model's own forward from the
    input ids, so rotary embeddings and per-layer attention types stay correct; only the early
    blocks' compute is saved. Gradients flow into `resid_pre` if it requires them.
    """
    if layer == 0:
        yield
        return
    blocks = lm.module(lm.adapter.blocks)
    originals = [blocks[i] for i in range(layer)]
    try:
        for i, original in enumerate(originals):
            blocks[i] = _Passthrough(original, resid_pre if i == 0 else None)
        yield
    finally:
        for i, original in enumerate(originals):
            blocks[i] = original


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Parameters do not require gradients inside the block (so backward computes none for them)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)

