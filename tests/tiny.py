"""Tiny randomly initialised models and a tokenizer trained here (no network), shared by tests.

Import as `from tiny import ...` (a module name of its own: tests/study has its own conftest)."""

from __future__ import annotations

import torch

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


def train_tokenizer():
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
    elif family == "gptj":  # attention and MLP in parallel, rotary on part of each head
        config = tf.GPTJConfig(vocab_size=vocab_size, n_embd=32, n_layer=4, n_head=4, rotary_dim=4, n_positions=128, **ids)
        model = tf.GPTJForCausalLM(config)
    elif family == "gpt_neox":  # parallel residual, fused query_key_value
        config = tf.GPTNeoXConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                  num_attention_heads=4, max_position_embeddings=128, use_parallel_residual=True, **ids)
        model = tf.GPTNeoXForCausalLM(config)
    else:
        raise ValueError(family)
    return model.eval()


FAMILIES = ("llama", "gpt2", "gemma3")
PARALLEL_FAMILIES = ("gptj", "gpt_neox")  # attention and MLP side by side: no resid_mid
