"""factpatch: locate and edit factual associations in GPT-style language models.

Causal tracing and ROME (Meng, Bau, Andonian, Belinkov: "Locating and Editing Factual Associations
in GPT", NeurIPS 2022); MEMIT (Meng et al., ICLR 2023) and AlphaEdit (Fang et al., ICLR 2025) for
many edits. Every edit is a patch that applies, stacks and reverts exactly.
"""

from .api import EditManyResult, EditResult, edit, edit_many, probabilities
from .core.errors import FactpatchError
from .core.models import LoadedModel, load_model
from .editing.patch import Patch, PatchStack, applied, load_patch, save_patch
from .editing.registry import hparams_for
from .editing.request import EditRequest, read_requests
from .editing.rome import ROMEParams

__all__ = [
    "EditManyResult",
    "EditRequest",
    "EditResult",
    "FactpatchError",
    "LoadedModel",
    "Patch",
    "PatchStack",
    "ROMEParams",
    "applied",
    "edit",
    "edit_many",
    "hparams_for",
    "load_model",
    "load_patch",
    "probabilities",
    "read_requests",
    "save_patch",
]
__version__ = "0.1.0"
