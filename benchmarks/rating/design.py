"""Who sees which video, in which order: a randomised design balanced across raters, with attention checks.

For each set and phase, the videos are shuffled once (study seed). Every rater sees the first ``shared`` of them
(the core on which agreement is measured), and ``n - shared`` more taken from the rest starting at offset
``i * (n - shared)`` for rater ``i`` (cyclically), so every rater sees each set exactly ``n`` times per phase and
the raters together cover the rest evenly (``n = None``: every rater sees every video, a fully crossed design).
A rater's order is randomised in rounds: each round shows one video of every set, sets in a fresh random order, so
no set clusters at the start or the end of a session (fatigue and drift hit all sets alike). ``repeats`` of the
rater's videos are shown a second time, at least a quarter of the session later, as attention checks.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Item", "Slot", "plan_raters", "balance_report"]


@dataclass(frozen=True)
class Item:
    """A video to plan: its database id, set id and phase."""

    video: int
    set_id: int
    phase: str


@dataclass(frozen=True)
class Slot:
    """One position in a rater's session: the video, and for a repeat the position of its first showing."""

    video: int
    repeat_of: int | None = None


def _groups(items: list[Item], seed: int) -> dict[tuple[int, str], list[Item]]:
    groups: dict[tuple[int, str], list[Item]] = defaultdict(list)
    for item in sorted(items, key=lambda x: (x.set_id, x.phase, x.video)):
        groups[(item.set_id, item.phase)].append(item)
    rng = random.Random(f"{seed}:groups")
    for key in sorted(groups):
        rng.shuffle(groups[key])
    return groups


def _chosen(groups: dict[tuple[int, str], list[Item]], rater: int, per_group: int | None,
            shared: int) -> list[Item]:
    chosen = []
    for key in sorted(groups):
        pool = groups[key]
        if per_group is None:
            chosen.extend(pool)
            continue
        core = min(shared, per_group, len(pool))
        rest, take = pool[core:], min(per_group, len(pool)) - core
        chosen.extend(pool[:core])
        if take:
            start = (rater * take) % len(rest)
            chosen.extend(rest[(start + j) % len(rest)] for j in range(take))
    return chosen


def _rounds(chosen: list[Item], rng: random.Random) -> list[Item]:
    by_set: dict[int, list[Item]] = defaultdict(list)
    for item in chosen:
        by_set[item.set_id].append(item)
    for set_id in sorted(by_set):
        rng.shuffle(by_set[set_id])
    order: list[Item] = []
    while any(by_set.values()):
        sets = [s for s in sorted(by_set) if by_set[s]]
        rng.shuffle(sets)
        order.extend(by_set[s].pop() for s in sets)
    return order


def _with_repeats(order: list[Item], repeats: int, rng: random.Random) -> list[Slot]:
    slots = [Slot(item.video) for item in order]
    count = min(repeats, len(order) // 2)
    if count == 0:
        return slots
    gap = max(1, len(order) // 4)
    firsts = sorted(rng.sample(range(len(order) - gap), count)) if len(order) > gap else []
    for first in reversed(firsts):  # insert from the back so earlier positions stay valid
        at = rng.randint(first + gap, len(slots))
        slots.insert(at, Slot(order[first].video, repeat_of=first))
    return _renumber(slots)


def _renumber(slots: list[Slot]) -> list[Slot]:
    """Point each repeat at the current position of its first showing (insertions shifted them)."""
    firsts: dict[int, int] = {}
    out = []
    for position, slot in enumerate(slots):
        if slot.repeat_of is None:
            firsts.setdefault(slot.video, position)
            out.append(slot)
        else:
            out.append(Slot(slot.video, repeat_of=firsts[slot.video]))
    return out


def plan_raters(items: list[Item], raters: int, per_group: int | None, repeats: int, seed: int,
                shared: int = 0) -> list[list[Slot]]:
    """Each rater's ordered slots (see the module docstring); the same inputs give the same plan."""
    groups = _groups(items, seed)
    plans = []
    for rater in range(raters):
        rng = random.Random(f"{seed}:rater:{rater}")
        order = _rounds(_chosen(groups, rater, per_group, shared), rng)
        plans.append(_with_repeats(order, repeats, rng))
    return plans


def balance_report(items: list[Item], plans: list[list[Slot]]) -> dict[tuple[int, str], list[int]]:
    """{(set id, phase): [first showings per rater]}: equal numbers in a row mean a balanced design."""
    lookup = {item.video: item for item in items}
    report: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0] * len(plans))
    for rater, slots in enumerate(plans):
        for slot in slots:
            if slot.repeat_of is None:
                item = lookup[slot.video]
                report[(item.set_id, item.phase)][rater] += 1
    return dict(report)
