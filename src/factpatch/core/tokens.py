"""Tokenisation helpers shared by tracing, editing and scoring.

Targets are written without a leading space (as in CounterFact); a target follows its prompt
after one space. The target's tokens are found by tokenising prompt and prompt + " " + target
and taking the difference, which works for byte-level BPE (GPT-2, SmolLM2) and SentencePiece
(Gemma) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FactpatchError


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text).input_ids)


def target_text(prompt: str, target: str) -> str:
    return prompt + ("" if prompt.endswith(" ") else " ") + target


def encode_target(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) such that prompt ids + target ids tokenises `prompt target`."""
    if not target.strip():
        raise FactpatchError("target is empty")
    prompt_ids = encode(tokenizer, prompt)
    full_ids = encode(tokenizer, target_text(prompt, target))
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        return prompt_ids, full_ids[len(prompt_ids):]
    # A merge crossed the boundary: fall back to the target on its own, with its leading space.
    own = list(tokenizer(" " + target, add_special_tokens=False).input_ids)
    return prompt_ids, own


def subject_last_index(tokenizer, text: str, subject: str, occurrence_start: int | None = None) -> int:
    """Index of the token holding the last character of `subject` in `text` (its first occurrence,
    or the one starting at character `occurrence_start`)."""
    start = text.find(subject) if occurrence_start is None else occurrence_start
    if start < 0 or not subject:
        raise FactpatchError(f"subject {subject!r} does not occur in {text!r}")
    last_char = start + len(subject) - 1
    encoding = tokenizer(text, return_offsets_mapping=True)
    for index, (begin, end) in enumerate(encoding["offset_mapping"]):
        if begin <= last_char < end:
            return index
    raise FactpatchError(f"could not map subject {subject!r} to tokens of {text!r}")


def subject_token_range(tokenizer, text: str, subject: str) -> tuple[int, int]:
    """[start, end) token indices covering the first occurrence of `subject` in `text`."""
    start_char = text.find(subject)
    if start_char < 0 or not subject:
        raise FactpatchError(f"subject {subject!r} does not occur in {text!r}")
    end_char = start_char + len(subject)
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    covered = [i for i, (b, e) in enumerate(offsets) if e > start_char and b < end_char and e > b]
    if not covered:
        raise FactpatchError(f"could not map subject {subject!r} to tokens of {text!r}")
    return covered[0], covered[-1] + 1


@dataclass
class Batch:
    """Right-padded token ids. Causal attention never lets a real token see the padding after it,
    so no attention mask is needed and positions stay 0..len-1 as in an unbatched pass."""

    input_ids: torch.Tensor  # (B, T)


def pad_right(sequences: list[list[int]], pad_id: int, device=None) -> Batch:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return Batch(ids)


def pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
