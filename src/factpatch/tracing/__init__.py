"""Causal tracing (the paper's §2): where a model stores a fact.

    settings   what to restore, the noise, σ (`TraceSettings`, `NoiseSettings`, `embedding_std`)
    schedule   which restorations run together, from which block (`Restore`, `plan`)
    engine     the restoration engine (`prepare`, `restored_probs`)
    reference  one restoration written plainly, the definition the engine is tested against
    prompt     one prompt traced (`trace_prompt`, `save_trace`)
    dataset    many facts: known facts, resumable runs, averages, the suggested layers
    plot       the heatmaps
"""

from .dataset import choose_layers, knows, load_facts, trace_dataset
from .prompt import PromptTrace, save_trace, trace_prompt
from .settings import KINDS, NoiseSettings, TraceSettings, embedding_std

__all__ = [
    "KINDS", "NoiseSettings", "PromptTrace", "TraceSettings", "choose_layers", "embedding_std", "knows",
    "load_facts", "save_trace", "trace_dataset", "trace_prompt",
]
