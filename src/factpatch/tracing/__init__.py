"""Causal tracing (the paper's §2): where a model stores a fact."""
