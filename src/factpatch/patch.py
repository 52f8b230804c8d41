"""Edits as small patch files that can be applied, stacked and reverted exactly.

A patch is a list of weight deltas — rank-one factors (ROME: Λ and C⁻¹k*, a few KB) or dense
tensors (fine-tuning baselines) — plus metadata: format version, the fingerprint of the model it
was made on, layer, module, request, hyper-parameters, before/after probabilities, creation time.
It is stored as a safetensors file whose metadata holds the JSON.

Exactness: applying adds the delta to the weights in float32; `PatchStack` keeps a copy of every
touched weight as it was before the first patch, so reverting all restores the original bits, and
reverting one restores the originals and re-applies the others in order — giving exactly the
weights that applying the others in order would.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .cache import atomic_dir, atomic_path
from .errors import FactpatchError
from .models import LoadedModel

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class WeightDelta:
    """A change to one parameter. Rank-one: delta = outer(left, right) in (d_out, d_in) orientation,
    transposed onto the parameter if it is stored (d_in, d_out) (GPT-2 Conv1D). Dense: added as is."""

    param: str  # parameter name, e.g. "model.layers.8.mlp.down_proj.weight"
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    transposed: bool = False

    def tensor(self) -> torch.Tensor:
        """The delta in the parameter's own storage layout (the one place Conv1D is handled)."""
        if self.dense is not None:
            return self.dense
        assert self.left is not None and self.right is not None
        delta = torch.outer(self.left, self.right)
        return delta.T if self.transposed else delta


@dataclass
class Patch:
    deltas: list[WeightDelta]
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.meta, sort_keys=True, default=str).encode())
        for delta in self.deltas:
            for t in (delta.left, delta.right, delta.dense):
                if t is not None:
                    digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().data)
        return digest.hexdigest()[:12]

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")

    def describe(self) -> str:
        request = self.meta.get("request") or {}
        what = request.get("prompt", "?").replace("{}", request.get("subject", "?"))
        return f"{self.id} {self.meta.get('method', '?')} layer {self.meta.get('layer')}: {what} -> {request.get('target_new', '?')}"


def make_meta(lm: LoadedModel, method: str, layer: int | None, module: str | None, **extra) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": lm.fingerprint,
        "model": lm.name,
        "method": method,
        "layer": layer,
        "module": module,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def save_patch(patch: Patch, path: Path) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    layout = []
    for i, delta in enumerate(patch.deltas):
        entry = {"param": delta.param, "transposed": delta.transposed, "kind": "dense" if delta.dense is not None else "rank1"}
        for part in ("left", "right", "dense"):
            value = getattr(delta, part)
            if value is not None:
                tensors[f"{i}.{part}"] = value.detach().cpu().contiguous()
        layout.append(entry)
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
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("factpatch")
    except (SafetensorError, OSError, ValueError) as exc:
        raise FactpatchError(f"not a readable patch file (truncated or corrupt?): {path}") from exc
    if raw is None:
        raise FactpatchError(f"{path} is a safetensors file but not a factpatch patch")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise FactpatchError(f"{path}: unsupported patch format version {meta.get('format_version')!r}")
    deltas = []
    for i, entry in enumerate(meta.pop("deltas")):
        deltas.append(
            WeightDelta(
                param=entry["param"],
                left=tensors.get(f"{i}.left"),
                right=tensors.get(f"{i}.right"),
                dense=tensors.get(f"{i}.dense"),
                transposed=entry["transposed"],
            )
        )
    return Patch(deltas, meta)


def _parameter(lm: LoadedModel, name: str) -> torch.nn.Parameter:
    try:
        return lm.model.get_parameter(name)
    except AttributeError as exc:
        raise FactpatchError(f"patch touches {name!r}, which this model does not have") from exc


class PatchStack:
    """Patches applied to one model, in order, with the original bits of every touched weight."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.applied: list[Patch] = []
        self.originals: dict[str, torch.Tensor] = {}

    def check(self, patch: Patch, force: bool = False) -> None:
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
        with torch.no_grad():
            for name, original in self.originals.items():
                _parameter(self.lm, name).copy_(original)
        self.originals.clear()
        self.applied = []
        for patch in keep:
            self._add(patch)
            self.applied.append(patch)
        return removed


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


def rome_patch(lm: LoadedModel, edit, **extra_meta) -> Patch:
    """Package a `rome.RomeEdit` as a patch (the factors Λ and C⁻¹k*, not the matrix)."""
    delta = WeightDelta(
        param=f"{edit.module}.weight",
        left=edit.Lambda.detach().cpu(),
        right=edit.c_inv_k.detach().cpu(),
        transposed=lm.adapter.mlp_out_transposed,
    )
    meta = make_meta(
        lm,
        "rome",
        edit.layer,
        edit.module,
        request={
            "prompt": edit.request.prompt,
            "subject": edit.request.subject,
            "target_new": edit.request.target_new,
            "target_true": edit.request.target_true,
        },
        hparams=edit.hparams.to_dict(),
        v_steps_run=edit.key_value.steps,
        edit_seconds=round(edit.seconds, 3),
        **extra_meta,
    )
    return Patch([delta], meta)


# ----------------------------------------------------------------------------- patched model directories

ORIGINALS_FILE = "factpatch-originals.safetensors"
PATCHES_DIR = "factpatch-patches"


def export_model(lm: LoadedModel, stack: PatchStack, out_dir: Path, force: bool = False) -> Path:
    """Write the model with its applied patches as a Hugging Face directory that remembers them:
    the original bits of touched weights and the patch files travel along, so the directory can be
    loaded with `load_model(out_dir)` and reverted exactly later."""
    from .models import FINGERPRINT_FILE

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
    if [p.id for p in stack.applied] != lm.patch_record["patches"]:
        raise FactpatchError(f"{directory}: the patch files do not match the recorded stack")
    stack.originals = load_file(str(directory / ORIGINALS_FILE))
    return stack
