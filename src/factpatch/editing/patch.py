"""Edits as small patch files that can be applied, stacked and reverted exactly.

A patch is a list of weight deltas — rank-one factors (ROME: Λ and C⁻¹k*, a few KB), low-rank
factors (a batch of MEMIT/AlphaEdit edits: R and the solved keys, one column per request) or dense
tensors (fine-tuning) — on any number of parameters, plus named attachments (tensors a method
needs later, e.g. AlphaEdit's keys of the edited facts) and metadata: format version, the
fingerprint of the model it was made on, method, layers, modules, requests, hyper-parameters,
creation time. It is stored as a safetensors file whose metadata holds the JSON. This module
knows no editing method: each method's module builds its `Patch`. A patch's id is a content
address (the model fingerprint, the requests, the tensors), so notes added to its metadata
later never change it.

Exactness: applying adds each delta to the weights in float32, in order; `PatchStack` keeps a copy
of every touched weight as it was before the first patch, so reverting all restores the original
bits, and reverting one restores the originals and re-applies the others in order — giving exactly
the weights that applying the others in order would.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..core.cache import atomic_dir, atomic_path
from ..core.errors import FactpatchError
from ..core.models import LoadedModel
from .request import EditRequest

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ATTACHMENT_PREFIX = "attach."
ID_LENGTH = 12  # hex digits of SHA-256: 48 bits, unique among any number of patches one person keeps


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return t.detach().cpu().flatten().contiguous().view(torch.uint8).numpy().data


@dataclass
class WeightDelta:
    """A change to one parameter, in (d_out, d_in) orientation, transposed onto the parameter if it
    is stored (d_in, d_out) (GPT-2 Conv1D):

    rank one   left (d_out,), right (d_in,):        delta = outer(left, right)
    low rank   left (d_out, r), right (d_in, r):    delta = left @ rightᵀ
    dense      dense, in the parameter's own layout: added as is
    """

    param: str  # parameter name, e.g. "model.layers.8.mlp.down_proj.weight"
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    transposed: bool = False

    @classmethod
    def factored(cls, param: str, left: torch.Tensor, right: torch.Tensor, transposed: bool) -> WeightDelta:
        """left @ rightᵀ, kept as factors while they are smaller than the matrix they make. Columns
        of `left` that are exactly zero add nothing and are dropped first: a batch that holds
        earlier edits in place (MEMIT's replay_scale 0) has a zero residual for each of them, and
        its delta is only as wide as the batch."""
        written = (left != 0).any(dim=0)  # a NaN column is kept: a broken solve must still show
        if not bool(written.all()):
            left, right = left[:, written], right[:, written]
        d_out, rank = left.shape
        d_in = right.shape[0]
        if rank * (d_out + d_in) < d_out * d_in:
            return cls(param, left=left.contiguous(), right=right.contiguous(), transposed=transposed)
        delta = left @ right.T  # (d_out, d_in)
        return cls(param, dense=(delta.T if transposed else delta).contiguous())

    @property
    def kind(self) -> str:
        if self.dense is not None:
            return "dense"
        assert self.left is not None
        return "rank1" if self.left.dim() == 1 else "lowrank"

    def tensor(self) -> torch.Tensor:
        """The delta in the parameter's own storage layout (the one place Conv1D is handled)."""
        if self.dense is not None:
            return self.dense
        assert self.left is not None and self.right is not None
        delta = torch.outer(self.left, self.right) if self.left.dim() == 1 else self.left @ self.right.T
        return delta.T if self.transposed else delta


@dataclass
class Patch:
    deltas: list[WeightDelta]
    meta: dict = field(default_factory=dict)
    attachments: dict[str, torch.Tensor] = field(default_factory=dict)  # method data that applies nothing

    @property
    def id(self) -> str:
        """Content address: a hash of what the patch does and to which model — the model's
        fingerprint, the requests it writes, and every delta and attachment (parameter, layout,
        dtype, shape, bytes). The rest of the metadata describes how and when it was made (time,
        seconds, hyper-parameters, probabilities, batch number) and may be added to after the patch
        exists (`api.edit` records probabilities after applying it), so it is not hashed: a patch
        keeps its id when applied, saved and loaded, or annotated."""
        digest = hashlib.sha256()
        tensors: list[torch.Tensor] = []

        def described(t: torch.Tensor | None) -> list | None:
            if t is None:
                return None
            tensors.append(t)
            return [str(t.dtype), list(t.shape)]

        content = {
            "fingerprint": self.fingerprint,
            "requests": self.requests,
            "deltas": [
                {"param": d.param, "transposed": d.transposed,
                 "parts": [described(d.left), described(d.right), described(d.dense)]}
                for d in self.deltas
            ],
            "attachments": {name: described(self.attachments[name]) for name in sorted(self.attachments)},
        }
        digest.update(json.dumps(content, sort_keys=True, default=str).encode())
        for t in tensors:
            digest.update(_tensor_bytes(t))
        return digest.hexdigest()[:ID_LENGTH]

    @property
    def legacy_id(self) -> str:
        """The id format 1 files were named and recorded by before ids were content addresses (it
        also hashed the metadata): read only to accept directories exported then."""
        digest = hashlib.sha256(json.dumps(self.meta, sort_keys=True, default=str).encode())
        tensors = [t for d in self.deltas for t in (d.left, d.right, d.dense)]
        tensors += [self.attachments[name] for name in sorted(self.attachments)]
        for t in tensors:
            if t is not None:
                digest.update(_tensor_bytes(t))
        return digest.hexdigest()[:ID_LENGTH]

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")

    @property
    def requests(self) -> list[dict]:
        """The requests this patch writes (old single-request patches: their one request)."""
        if "requests" in self.meta:
            return list(self.meta["requests"])
        return [self.meta["request"]] if self.meta.get("request") else []

    @property
    def layers(self) -> list[int]:
        if "layers" in self.meta:
            return list(self.meta["layers"])
        return [self.meta["layer"]] if self.meta.get("layer") is not None else []

    def describe(self) -> str:
        requests = self.requests
        layers = self.layers
        where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}" if layers else "no layer"
        if not requests and self.meta.get("applies_on") is not None:
            return f"{self.id} {self.meta.get('method', '?')} {where}: a correction of {len(self.meta['applies_on'])} patches"
        if len(requests) == 1:
            request = requests[0]
            what = request.get("prompt", "?").replace("{}", request.get("subject", "?"))
            return f"{self.id} {self.meta.get('method', '?')} {where}: {what} -> {request.get('target_new', '?')}"
        return f"{self.id} {self.meta.get('method', '?')} {where}: {len(requests)} edits"


def make_meta(
    lm: LoadedModel,
    method: str,
    layers: Sequence[int],
    modules: Sequence[str],
    requests: Sequence[EditRequest],
    **extra,
) -> dict:
    """Patch metadata. Patches of one layer / one request also carry the singular `layer`,
    `module` and `request` fields that format-1 readers know."""
    meta = {
        "format_version": FORMAT_VERSION,
        "fingerprint": lm.fingerprint,
        "model": lm.name,
        "method": method,
        "layers": list(layers),
        "modules": list(modules),
        "requests": [r.to_dict() for r in requests],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    meta["layer"] = layers[0] if len(layers) == 1 else None
    meta["module"] = modules[0] if len(modules) == 1 else None
    if len(requests) == 1:
        meta["request"] = requests[0].to_dict()
    return {**meta, **extra}


def save_patch(patch: Patch, path: Path) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    layout = []
    for i, delta in enumerate(patch.deltas):
        layout.append({"param": delta.param, "transposed": delta.transposed, "kind": delta.kind})
        for part in ("left", "right", "dense"):
            value = getattr(delta, part)
            if value is not None:
                tensors[f"{i}.{part}"] = value.detach().cpu().contiguous()
    for name, value in patch.attachments.items():
        tensors[ATTACHMENT_PREFIX + name] = value.detach().cpu().contiguous()
    metadata = {"factpatch": json.dumps({**patch.meta, "deltas": layout}, default=str)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_patch(path: Path) -> Patch:
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"patch file not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("factpatch")
    except (SafetensorError, OSError, ValueError) as exc:
        raise FactpatchError(f"not a readable patch file (truncated or corrupt?): {path}") from exc
    if raw is None:
        raise FactpatchError(f"{path} is a safetensors file but not a factpatch patch")
    try:
        meta = json.loads(raw)
        layout = meta.pop("deltas")
    except (json.JSONDecodeError, KeyError, AttributeError) as exc:
        raise FactpatchError(f"{path}: patch metadata is unreadable") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise FactpatchError(f"{path}: unsupported patch format version {meta.get('format_version')!r}")
    deltas = []
    for i, entry in enumerate(layout):
        deltas.append(
            WeightDelta(
                param=entry["param"],
                left=tensors.get(f"{i}.left"),
                right=tensors.get(f"{i}.right"),
                dense=tensors.get(f"{i}.dense"),
                transposed=entry["transposed"],
            )
        )
    attachments = {k[len(ATTACHMENT_PREFIX):]: v for k, v in tensors.items() if k.startswith(ATTACHMENT_PREFIX)}
    return Patch(deltas, meta, attachments)


def _parameter(lm: LoadedModel, name: str) -> torch.nn.Parameter:
    try:
        return lm.model.get_parameter(name)
    except AttributeError as exc:
        raise FactpatchError(f"patch touches {name!r}, which this model does not have") from exc


def relative_change(original: torch.Tensor, current: torch.Tensor) -> float:
    """‖W − W₀‖_F / ‖W₀‖_F, in float64 so that a change of one part in 10⁷ is not rounding."""
    original, current = original.double(), current.double()
    return float(torch.linalg.norm(current - original) / torch.linalg.norm(original))


class PatchStack:
    """Patches applied to one model, in order, with the original bits of every touched weight."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.applied: list[Patch] = []
        self.originals: dict[str, torch.Tensor] = {}

    def check(self, patch: Patch, force: bool = False) -> None:
        below = patch.meta.get("applies_on")
        if below is not None and [p.id for p in self.applied] != list(below):
            # a correction computed from one stack's weights (editing.restrain) means nothing on another
            raise FactpatchError(
                f"patch {patch.id} was made for the stack {', '.join(below) or '(none)'}; "
                f"here {', '.join(p.id for p in self.applied) or 'no patch'} is applied"
            )
        if patch.fingerprint != self.lm.fingerprint:
            message = (
                f"patch {patch.id} was made on another model (fingerprint {patch.fingerprint[:12]}, "
                f"this model is {self.lm.fingerprint[:12]})"
            )
            if not force:
                raise FactpatchError(message + "; use --force to apply it anyway")
            logger.warning("%s; applying anyway (--force)", message)
        for delta in patch.deltas:
            param = _parameter(self.lm, delta.param)
            if tuple(delta.tensor().shape) != tuple(param.shape):
                raise FactpatchError(
                    f"patch {patch.id} delta for {delta.param} has shape {tuple(delta.tensor().shape)}, "
                    f"the model's is {tuple(param.shape)}"
                )

    def apply(self, patch: Patch, force: bool = False) -> None:
        self.check(patch, force)
        self._add(patch)
        self.applied.append(patch)

    def _add(self, patch: Patch) -> None:
        with torch.no_grad():
            for delta in patch.deltas:
                param = _parameter(self.lm, delta.param)
                if delta.param not in self.originals:
                    self.originals[delta.param] = param.detach().clone()
                param.add_(delta.tensor().to(param.device, param.dtype))

    def relative_change(self) -> dict[str, float]:
        """‖W − W₀‖_F / ‖W₀‖_F of every weight the stack touches: how far the applied patches
        together have moved each matrix from its original (the norm growth that Liu et al. 2026,
        "Toward Ultra-Long-Horizon Sequential Model Editing", arXiv 2602.02543, find before a
        sequential run collapses)."""
        return {name: relative_change(original, _parameter(self.lm, name).detach())
                for name, original in self.originals.items()}

    def revert(self, patch_id: str | None = None) -> list[Patch]:
        """Revert one patch (by id or id prefix) or, with None, all of them. Returns what was removed."""
        if patch_id is None:
            removed, keep = list(self.applied), []
        else:
            matches = [p for p in self.applied if p.id.startswith(patch_id)]
            if len(matches) != 1:
                raise FactpatchError(
                    f"no applied patch matches {patch_id!r}" if not matches else f"{patch_id!r} matches several patches"
                )
            removed, keep = matches, [p for p in self.applied if p is not matches[0]]
            for position, patch in enumerate(keep):
                below = patch.meta.get("applies_on")
                if below is not None and [p.id for p in keep[:position]] != list(below):
                    raise FactpatchError(f"patch {patch.id} was made for the stack that {matches[0].id} is part of; "
                                         f"revert {patch.id} first")
        with torch.no_grad():
            for name, original in self.originals.items():
                _parameter(self.lm, name).copy_(original)
        self.originals.clear()
        self.applied = []
        for patch in keep:
            self._add(patch)
            self.applied.append(patch)
        return removed


@contextlib.contextmanager
def unedited(stack: PatchStack | None) -> Iterator[None]:
    """Inside the block the model holds the weights the stack was applied to; after it, the same
    patches again, in order — the same bits, as applying them in order always gives.

    For work whose result is cached under the model's fingerprint, which names the unedited weights:
    an editor's key statistics C, its context prefixes and a corpus it samples (`Editor.prepare`).
    Computed on an edited model they would be that model's and then served, from the cache, to
    every later run of the unedited one."""
    if stack is None or not stack.applied:
        yield
        return
    patches = stack.revert()
    try:
        yield
    finally:
        for patch in patches:  # checked when first applied; _add records the originals again
            stack._add(patch)
            stack.applied.append(patch)


class applied:
    """Context manager: the patches are applied inside the block and reverted exactly after it."""

    def __init__(self, lm: LoadedModel, patches: list[Patch], force: bool = False):
        self.stack = PatchStack(lm)
        self.patches = patches
        self.force = force

    def __enter__(self) -> PatchStack:
        try:
            for patch in self.patches:
                self.stack.apply(patch, self.force)
        except BaseException:
            self.stack.revert()
            raise
        return self.stack

    def __exit__(self, *exc) -> None:
        self.stack.revert()


def merged(patches: Sequence[Patch], meta: dict) -> Patch:
    """One patch that does what applying `patches` in order does: factored deltas are kept in
    order (each is small), dense deltas of one parameter are summed (each is a whole matrix)."""
    deltas: list[WeightDelta] = []
    dense: dict[str, WeightDelta] = {}
    for patch in patches:
        for delta in patch.deltas:
            if delta.dense is None:
                deltas.append(delta)
            elif delta.param in dense:
                dense[delta.param].dense = dense[delta.param].dense + delta.dense
            else:
                dense[delta.param] = WeightDelta(delta.param, dense=delta.dense.clone())
                deltas.append(dense[delta.param])
    attachments = {f"{i}.{name}": t for i, p in enumerate(patches) for name, t in p.attachments.items()}
    return Patch(deltas, meta, attachments)


def one_after_another(
    lm: LoadedModel, requests: Sequence[EditRequest], edit_one: Callable[[EditRequest], Patch], progress: bool = True
) -> Patch:
    """Edit a list with a one-request method: each edit is computed on the model with the earlier
    ones applied; the model is left as it was. One request gives that request's own patch."""
    from tqdm.auto import tqdm

    if len(requests) == 1:
        return edit_one(requests[0])
    patches: list[Patch] = []
    with applied(lm, []) as stack:
        for request in tqdm(requests, desc="editing", unit="edit", disable=not progress or len(requests) < 2):
            patch = edit_one(request)
            stack.apply(patch)
            patches.append(patch)
    first = patches[0].meta
    layers = sorted({layer for p in patches for layer in p.layers})
    modules = sorted({m for p in patches for m in (p.meta.get("modules") or [p.meta.get("module")]) if m})
    each = {}
    steps = [p.meta.get("v_steps_run") for p in patches]
    if all(isinstance(n, int) for n in steps):  # each request's optimisation steps, as a batch method records them
        each["v_steps_run"] = steps
    meta = make_meta(
        lm, first["method"], layers, modules, list(requests),
        hparams=first.get("hparams"), edit_seconds=round(sum(p.meta.get("edit_seconds", 0.0) for p in patches), 3),
        order="one after another", **each,
    )
    return merged(patches, meta)


# ----------------------------------------------------------------------------- patched model directories

ORIGINALS_FILE = "factpatch-originals.safetensors"
PATCHES_DIR = "factpatch-patches"


def export_model(lm: LoadedModel, stack: PatchStack, out_dir: Path, force: bool = False) -> Path:
    """Write the model with its applied patches as a Hugging Face directory that remembers them:
    the original bits of touched weights and the patch files travel along, so the directory can be
    loaded with `load_model(out_dir)` and reverted exactly later."""
    from ..core.models import FINGERPRINT_FILE

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise FactpatchError(f"output directory {out_dir} is not empty (use --force to replace it)")
    with atomic_dir(out_dir) as staging:
        lm.model.save_pretrained(staging)
        lm.tokenizer.save_pretrained(staging)
        if stack.originals:
            save_file({k: v.contiguous() for k, v in stack.originals.items()}, str(staging / ORIGINALS_FILE))
        (staging / PATCHES_DIR).mkdir()
        for index, patch in enumerate(stack.applied):
            save_patch(patch, staging / PATCHES_DIR / f"{index:03d}-{patch.id}.safetensors")
        base_name = lm.patch_record.get("name") or lm.name
        (staging / FINGERPRINT_FILE).write_text(
            json.dumps(
                {"name": base_name, "fingerprint": lm.fingerprint, "patches": [p.id for p in stack.applied]},
                indent=2,
            )
        )
    return out_dir


def restore_stack(lm: LoadedModel) -> PatchStack:
    """The PatchStack of a model loaded from an exported directory (empty for a plain model)."""
    stack = PatchStack(lm)
    if not lm.patch_record.get("patches"):
        return stack
    directory = Path(lm.source)
    files = sorted((directory / PATCHES_DIR).glob("*.safetensors"))
    stack.applied = [load_patch(f) for f in files]
    recorded = lm.patch_record["patches"]
    if [p.id for p in stack.applied] != recorded and [p.legacy_id for p in stack.applied] != recorded:
        raise FactpatchError(f"{directory}: the patch files do not match the recorded stack")
    stack.originals = load_file(str(directory / ORIGINALS_FILE))
    return stack
