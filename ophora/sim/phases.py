"""The 12 cataract-surgery phases of OphSim and the operations inside them.

Phase names and prompts are Ophora's published Cataract-1K phase prompts (uni-medical/Ophora,
``Cataract-1K-phase_prompts.csv``, shipped as ``ophora/sim/data/phase_prompts.csv``). Phase ids follow the
order of that file (0-11). Operation ids are global (0-18), like OphNet's ``operation_id``: each operation
belongs to exactly one phase.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Operation:
    """One fine-grained step inside a phase; ``op_id`` is global across phases."""

    op_id: int
    name: str
    instrument: str


@dataclass(frozen=True)
class Phase:
    """One surgical phase: its id, Ophora's prompt texts, and its operations in surgical order."""

    phase_id: int
    name: str
    phase_prompt: str
    caption_prompt: str
    operations: tuple[Operation, ...]


# Operations per phase, in the order of phase_prompts.csv: (name, instrument) pairs.
_OPERATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "incision": (("main corneal incision", "keratome"), ("side-port incision", "side_port_blade")),
    "viscoelastic": (("viscoelastic injection", "cannula"),),
    "capsulorhexis": (("capsule puncture", "cystotome"), ("circular capsular tear", "rhexis_forceps")),
    "hydrodissection": (("hydrodissection wave", "cannula"), ("nucleus rotation", "cannula")),
    "phacoemulsification": (("nucleus sculpting", "phaco_tip"), ("quadrant emulsification", "phaco_tip")),
    "irrigation-aspiration": (("cortex aspiration", "ia_tip"),),
    "Capsule-Pulishing": (("posterior capsule polishing", "polisher"),),
    "Lens-Implantation": (("IOL injection", "iol_injector"), ("IOL unfolding", "iol_injector")),
    "Lens-positioning": (("IOL centration", "sinskey_hook"),),
    "viscoelastic-suction": (("viscoelastic aspiration", "ia_tip"),),
    "Anterio-Chamber-Flushing": (("anterior chamber irrigation", "cannula"), ("stromal wound hydration", "cannula")),
    "Tonifying-Antibiotics": (("miotic injection", "cannula"), ("intracameral antibiotic injection", "cannula")),
}


@lru_cache(maxsize=1)
def phases() -> tuple[Phase, ...]:
    """All 12 phases in surgical order, with global operation ids assigned in that order."""
    text = resources.files("ophora.sim").joinpath("data/phase_prompts.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines()))
    out, next_op = [], 0
    for phase_id, row in enumerate(rows):
        name = row["clip id"].rsplit("_", 1)[0]
        ops = []
        for op_name, instrument in _OPERATIONS[name]:
            ops.append(Operation(next_op, op_name, instrument))
            next_op += 1
        out.append(Phase(phase_id, name, row["phase prompt"], row["caption prompt"], tuple(ops)))
    return tuple(out)




def operations() -> tuple[Operation, ...]:
    """All operations of all phases, indexed by their global id."""
    return tuple(op for phase in phases() for op in phase.operations)


def phase_of_operation(op_id: int) -> Phase:
    """The phase that contains operation ``op_id``."""
    for phase in phases():
        if any(op.op_id == op_id for op in phase.operations):
            return phase
    raise KeyError(f"unknown operation id {op_id}; ids run from 0 to {len(operations()) - 1}")
