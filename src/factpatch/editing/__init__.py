"""Editing: requests, the editor registry, the methods (ROME, MEMIT, AlphaEdit, fine-tuning),
the key statistics they share, and the patch files every edit becomes."""

from .patch import Patch, PatchStack, WeightDelta, applied, load_patch, save_patch
from .registry import METHODS, Editor, make_editor, method_params
from .request import EditRequest, read_requests

__all__ = [
    "METHODS", "EditRequest", "Editor", "Patch", "PatchStack", "WeightDelta", "applied", "load_patch",
    "make_editor", "method_params", "read_requests", "save_patch",
]
