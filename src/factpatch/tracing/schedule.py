"""Which restorations run together, and from where: pure planning, no model.

A restoration at (token i, layer l) changes nothing before its first changed block and nothing
at tokens before i, so its pass starts at that block (`start_layer`) and computes positions from
its first restored token on. Restorations that start at the same block are grouped into passes
by a cost model (`plan_passes`): a pass costs its rows × positions plus a fixed overhead, so
grouping trades positions computed in vain for fewer passes. Windows clamped at layer 0 make the
same edits up to the smallest such window's end and share one trunk pass up to there
(`shared_trunks`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .settings import layer_window

# Cost model for grouping restorations into passes, in token positions per block: a pass costs
# about CALL_OVERHEAD positions' worth of work on top of rows × positions (Python and kernel
# overhead dominate small passes on a CPU); passes are capped at MAX_POSITIONS rows × positions.
CALL_OVERHEAD = 48
MAX_POSITIONS = 768


@dataclass(frozen=True)
class Restore:
    """One corrupted-with-restoration run (repeated for every noise sample).

    kind `hidden`: the residual stream after block `layer` at `tokens` is put back to its clean value;
    `mlp` / `attn`: that output at `tokens` in every layer of the window around `layer`.
    `sever`: additionally hold that output of every layer after `layer` at `tokens` at its
    corrupted value (only with kind `hidden`)."""

    kind: str
    layer: int
    tokens: tuple[int, ...]
    sever: str | None = None


def start_layer(restore: Restore, n_layers: int, window: int, sequential: bool = False) -> int:
    """The first block a restoration's pass has to compute.

    In a window's first block only the restored positions change (the block's inputs are the
    corrupted run's), and with attention and MLP in sequence their new output follows from the
    cached corrupted states without running the block (`core.blocks`): the pass starts one
    block later, as a hidden-state restoration at that block does.

    >>> start_layer(Restore("mlp", 0, (0,)), 30, 10), start_layer(Restore("hidden", 3, (0,)), 30, 10)
    (0, 4)
    """
    if restore.kind == "hidden":
        return restore.layer + 1
    start = layer_window(restore.layer, n_layers, window).start
    return start + 1 if sequential else start


@dataclass
class Trunks:
    """Restorations (indices into the list) that share a trunk pass from block `start` to `branch`."""

    groups: list[list[int]]
    start: int
    branch: int


def shared_trunks(restores: Sequence[Restore], n_layers: int, window: int, sequential: bool) -> Trunks:
    """Window restorations clamped at the first layer, [0, e) with e ≥ the window of layer 0's end,
    run the same blocks with the same edits up to that end (`branch`): restorations of one kind
    and tokens share one trunk pass up to there and continue from its result."""
    start = start_layer(Restore("mlp", 0, (0,)), n_layers, window, sequential)
    branch = layer_window(0, n_layers, window).stop
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for j, restore in enumerate(restores):
        if restore.kind != "hidden" and layer_window(restore.layer, n_layers, window).start == 0:
            groups.setdefault((restore.kind, restore.tokens), []).append(j)
    shared = [js for js in groups.values() if len(js) > 1] if branch > start else []
    return Trunks(shared, start, branch)


def plan_passes(firsts: list[int], rows_each: int, n_tokens: int, suffix: bool) -> list[tuple[int, list[int]]]:
    """Split restorations with first restored tokens `firsts` (each run for `rows_each` samples)
    into passes [(first position computed, indices)] minimising the modelled cost; without
    `suffix` every pass computes whole prompts."""
    order = sorted(range(len(firsts)), key=lambda j: firsts[j])
    groups = _cheapest_runs(order, firsts, rows_each, n_tokens) if suffix else [(0, order)]
    passes = []
    for first, members in groups:
        per_pass = max(1, MAX_POSITIONS // max(1, (n_tokens - first) * rows_each))
        for k in range(0, len(members), per_pass):
            passes.append((first, members[k : k + per_pass]))
    return passes


@dataclass
class Plan:
    """The passes that run a list of restorations: first the shared trunk passes, (first position,
    indices into `trunks.groups`), then the passes proper, (start block, first position, indices
    into the list), those in a trunk group starting at `trunks.branch` from the trunk's result."""

    trunks: Trunks
    trunk_passes: list[tuple[int, list[int]]]
    passes: list[tuple[int, int, list[int]]]


def plan(restores: Sequence[Restore], n_layers: int, window: int, samples: int, n_tokens: int,
         suffix: bool, sequential: bool) -> Plan:
    """Every restoration's pass: where it starts, which it shares, how they are grouped."""
    starts = [start_layer(restore, n_layers, window, sequential) for restore in restores]
    trunks = shared_trunks(restores, n_layers, window, sequential)
    for members in trunks.groups:
        for j in members:
            starts[j] = trunks.branch
    trunk_passes = plan_passes([min(restores[js[0]].tokens) for js in trunks.groups], samples, n_tokens, suffix)
    by_start: dict[int, list[int]] = {}
    for j, start in enumerate(starts):
        by_start.setdefault(start, []).append(j)
    passes = []
    for start, members in sorted(by_start.items()):
        firsts = [min(restores[j].tokens) for j in members]
        for first, chosen in plan_passes(firsts, samples, n_tokens, suffix):
            passes.append((start, first, [members[k] for k in chosen]))
    return Plan(trunks, trunk_passes, passes)


def _cheapest_runs(order: list[int], firsts: list[int], rows_each: int, n_tokens: int) -> list[tuple[int, list[int]]]:
    """Dynamic programme over contiguous runs of the sorted list: a run computes positions from
    its smallest first token."""
    n = len(order)
    best = [0.0] + [math.inf] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for begin in range(end):
            width = n_tokens - firsts[order[begin]]
            rows = (end - begin) * rows_each
            passes = math.ceil(rows * width / MAX_POSITIONS)
            cost = best[begin] + rows * width + CALL_OVERHEAD * passes
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], n
    while end > 0:
        begin = cut[end]
        groups.append((firsts[order[begin]], order[begin:end]))
        end = begin
    groups.reverse()
    return groups
