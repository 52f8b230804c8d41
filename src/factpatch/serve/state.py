"""`--state DIR`: the applied patch stack on disk, so that a restart comes back to the same weights.

    DIR/stack.json             {"model", "base_fingerprint", "patches": [id, ...]}  (the order applied)
    DIR/patches/<id>.safetensors

Every file is written to a temporary name and renamed into place (core.cache.atomic_path): a patch
file is complete before `stack.json` names it, and `stack.json` is replaced in one rename, so a
process killed at any moment leaves either the old stack or the new one. Patch files no longer
named are removed after the new `stack.json` is in place.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..core.cache import write_text_atomic
from ..core.errors import FactpatchError
from ..editing.patch import Patch, load_patch, save_patch

logger = logging.getLogger(__name__)

STACK_FILE = "stack.json"
PATCHES = "patches"


@dataclass(frozen=True)
class SavedStack:
    model: str
    base_fingerprint: str
    patch_ids: list[str]


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise FactpatchError(f"--state {self.root} is a file, not a directory")
        (self.root / PATCHES).mkdir(parents=True, exist_ok=True)

    def patch_path(self, patch_id: str) -> Path:
        return self.root / PATCHES / f"{patch_id}.safetensors"

    def read(self) -> SavedStack | None:
        path = self.root / STACK_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return SavedStack(str(data["model"]), str(data["base_fingerprint"]), [str(i) for i in data["patches"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise FactpatchError(f"{path} is not a factpatch serve state file") from exc

    def load_patches(self, saved: SavedStack) -> list[Patch]:
        patches = []
        for patch_id in saved.patch_ids:
            patch = load_patch(self.patch_path(patch_id))
            if patch.id != patch_id:
                raise FactpatchError(f"{self.patch_path(patch_id)} holds patch {patch.id}, not {patch_id}")
            patches.append(patch)
        return patches

    def write(self, model: str, base_fingerprint: str, patches: list[Patch]) -> None:
        for patch in patches:
            if not self.patch_path(patch.id).exists():
                save_patch(patch, self.patch_path(patch.id))
        record = {"model": model, "base_fingerprint": base_fingerprint, "patches": [p.id for p in patches]}
        write_text_atomic(self.root / STACK_FILE, json.dumps(record, indent=1) + "\n")
        keep = {self.patch_path(p.id).name for p in patches}
        for path in (self.root / PATCHES).glob("*.safetensors"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
