"""Buffer planning for a run: which reusable slot each activation is written to.

Pure Python over the steps' (inputs, outputs) lists and the values' widths, so
it is tested without Numba. A value lives from the step that writes it to the
last step that reads it (the wanted outputs: to the end), so a step's output
never shares memory with its inputs, and a forward pass needs a few slots per
width instead of one buffer per value of every layer.
"""
from __future__ import annotations

from typing import Mapping, Sequence

Steps = Sequence[tuple[Sequence[str], Sequence[str]]]  # (inputs, outputs) per step


def slot_plan(io: Steps, widths: Mapping[str, int], wanted: Sequence[str]) -> dict[str, int]:
    """Value -> slot number, reusing a slot of the same width once its value is dead.
    Values without a width (graph inputs, values written without a pooled buffer) get none."""
    last_use = {name: i for i, (inputs, _) in enumerate(io) for name in inputs}
    last_use.update((name, len(io)) for name in wanted)
    plan: dict[str, int] = {}
    free: dict[int, list[int]] = {}
    live: list[str] = []
    slots = 0
    for i, (_, outputs) in enumerate(io):
        for name in [n for n in live if last_use.get(n, -1) < i]:
            live.remove(name)
            free.setdefault(widths[name], []).append(plan[name])
        for name in outputs:
            if name not in widths:
                continue
            pool = free.get(widths[name])
            if pool:
                plan[name] = pool.pop()
            else:
                plan[name], slots = slots, slots + 1
            live.append(name)
    return plan


def last_step(io: Steps, wanted: Sequence[str]) -> int:
    """Index of the last step a run needs: the ones after it produce nothing wanted."""
    return max(i for i, (_, outputs) in enumerate(io) if set(outputs).intersection(wanted))
