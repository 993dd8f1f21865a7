"""Captions for OphSim clips: noisy surgeon narration (OphVL-like) and clean generation instructions (Ophora-like).

``narration_caption`` imitates an ASR transcript of a surgeon narrating a YouTube video: lowercase, fillers,
first-person speech, timestamps, channel plugs and other off-topic remarks, repeated words and
mis-transcriptions, around one core clause that always names the operation and its instrument.
``instruction`` is what the curation rewrite should produce: a concise, third-person description built from
Ophora's caption prompt content, the operations and the patient's visible attributes.
``noise_markers`` finds what must not survive a rewrite; the curation tests use it too.

Patient attributes (all optional, defaults in brackets): ``iris_color`` "brown"|"hazel"|"blue"|"green"
["brown"], ``pupil_radius`` as a fraction of the iris radius, 0..1 [0.55], ``lens_opacity`` 0..1 [0.5],
``eye_side`` "left"|"right" ["right"].
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ophora.sim.phases import Operation, Phase

# ---------------------------------------------------------------------------------------------------------------
# Surgical vocabulary


@dataclass(frozen=True)
class _OpText:
    """How one operation is spoken about (``base``/``gerund``) and written about (``clause``, third person).

    ``keyword`` is a lowercase word stem that ``base``, ``gerund`` and the operation's name all contain.
    """

    keyword: str
    base: str
    gerund: str
    clause: str


_INSTRUMENT_NAMES = {
    "keratome": "keratome",
    "side_port_blade": "side-port blade",
    "cannula": "cannula",
    "cystotome": "cystotome",
    "rhexis_forceps": "capsulorhexis forceps",
    "phaco_tip": "phaco tip",
    "ia_tip": "I/A handpiece",
    "polisher": "polishing tip",
    "iol_injector": "IOL injector",
    "sinskey_hook": "Sinskey hook",
}

_OP_TEXT = {
    "main corneal incision": _OpText(
        "incision", "make the main incision", "making the main incision",
        "a keratome creates a self-sealing main incision in the clear cornea"),
    "side-port incision": _OpText(
        "incision", "make the side port incision", "making the side port incision",
        "a side-port blade makes a small paracentesis incision at the limbus"),
    "viscoelastic injection": _OpText(
        "viscoelastic", "fill the chamber with viscoelastic", "filling the chamber with viscoelastic",
        "a cannula injects viscoelastic into the anterior chamber, which deepens and stabilises it"),
    "capsule puncture": _OpText(
        "capsule", "puncture the anterior capsule", "puncturing the anterior capsule",
        "a cystotome punctures the anterior lens capsule and raises a small flap"),
    "circular capsular tear": _OpText(
        "tear", "tear the rhexis around", "tearing the rhexis around",
        "capsulorhexis forceps create a continuous circular tear in the anterior lens capsule"),
    "hydrodissection wave": _OpText(
        "hydrodissect", "hydrodissect under the capsule", "hydrodissecting under the capsule",
        "a cannula injects balanced salt solution under the capsule and a fluid wave separates the cortex"),
    "nucleus rotation": _OpText(
        "nucleus", "rotate the nucleus", "rotating the nucleus",
        "a cannula rotates the freed nucleus inside the capsular bag"),
    "nucleus sculpting": _OpText(
        "sculpt", "sculpt a groove in the nucleus", "sculpting a groove in the nucleus",
        "a phaco tip sculpts a central groove in the cataractous nucleus"),
    "quadrant emulsification": _OpText(
        "quadrant", "emulsify the quadrants", "emulsifying the quadrants",
        "a phaco tip emulsifies and aspirates the nuclear quadrants"),
    "cortex aspiration": _OpText(
        "cortex", "aspirate the cortex", "aspirating the cortex",
        "an I/A handpiece aspirates the remaining cortical material from the capsular bag"),
    "posterior capsule polishing": _OpText(
        "polish", "polish the posterior capsule", "polishing the posterior capsule",
        "a polishing tip gently cleans residual lens epithelial cells from the posterior capsule"),
    "IOL injection": _OpText(
        "inject", "inject the lens", "injecting the lens",
        "an IOL injector delivers the folded intraocular lens through the corneal incision"),
    "IOL unfolding": _OpText(
        "unfold", "let the lens unfold in the bag", "letting the lens unfold in the bag",
        "the intraocular lens unfolds inside the capsular bag as the IOL injector withdraws"),
    "IOL centration": _OpText(
        "iol", "center the iol", "centering the iol",
        "a Sinskey hook dials and centres the intraocular lens within the capsular bag"),
    "viscoelastic aspiration": _OpText(
        "viscoelastic", "suck out the viscoelastic", "sucking out the viscoelastic",
        "an I/A handpiece aspirates the viscoelastic from the anterior chamber and behind the lens"),
    "anterior chamber irrigation": _OpText(
        "anterior chamber", "flush the anterior chamber", "flushing the anterior chamber",
        "a cannula flushes the anterior chamber with balanced salt solution"),
    "stromal wound hydration": _OpText(
        "wound", "hydrate the wounds", "hydrating the wounds",
        "a cannula hydrates the corneal stroma at the incision edges to seal the wounds"),
    "miotic injection": _OpText(
        "miotic", "inject the miotic", "injecting the miotic",
        "a cannula injects a miotic agent and the pupil constricts"),
    "intracameral antibiotic injection": _OpText(
        "antibiotic", "inject the antibiotic", "injecting the antibiotic",
        "a cannula injects intracameral antibiotic into the anterior chamber"),
}

# Human-readable phase labels (used by instructions) and spoken keywords (at least one is in every narration).
_PHASE_LABELS = {
    "incision": "corneal incision",
    "viscoelastic": "viscoelastic injection",
    "capsulorhexis": "capsulorhexis",
    "hydrodissection": "hydrodissection",
    "phacoemulsification": "phacoemulsification",
    "irrigation-aspiration": "irrigation and aspiration",
    "Capsule-Pulishing": "capsule polishing",
    "Lens-Implantation": "lens implantation",
    "Lens-positioning": "lens positioning",
    "viscoelastic-suction": "viscoelastic removal",
    "Anterio-Chamber-Flushing": "anterior chamber flushing",
    "Tonifying-Antibiotics": "miotic and antibiotic injection",
}

_PHASE_TIPS = {
    "incision": ("keep the blade in the plane of the cornea", "you want a nice three plane wound",
                 "don't go too anterior with the incision"),
    "viscoelastic": ("start filling from the far side", "don't overfill the chamber",
                     "dispersive first then cohesive"),
    "capsulorhexis": ("regrasp the flap often", "keep the rhexis around five millimeters",
                      "watch out it doesn't run out to the periphery"),
    "hydrodissection": ("press on the nucleus to break the fluid wave", "make sure the nucleus spins freely",
                        "small amounts of fluid at a time"),
    "phacoemulsification": ("keep the phaco tip in the center", "low vacuum while sculpting",
                            "chop it into four quadrants"),
    "irrigation-aspiration": ("aspirate the subincisional cortex last", "keep the port facing up",
                              "strip the cortex tangentially"),
    "Capsule-Pulishing": ("be gentle on the posterior capsule", "low vacuum for polishing",
                          "clean the anterior capsule rim too"),
    "Lens-Implantation": ("lead haptic goes in first", "keep the injector bevel down",
                          "inject slowly and controlled"),
    "Lens-positioning": ("dial it into the bag", "make sure both haptics are in the bag",
                         "check the centration with the pupil"),
    "viscoelastic-suction": ("get behind the lens for the viscoelastic", "don't leave any visco behind",
                             "rock the lens a little"),
    "Anterio-Chamber-Flushing": ("wash out any debris", "check the wounds are sealed",
                                 "hydrate both incisions"),
    "Tonifying-Antibiotics": ("the pupil comes down nicely", "we always give intracameral antibiotic",
                              "check the pressure at the end"),
}


def instrument_name(instrument: str) -> str:
    """Readable name of an instrument id of ``ophora.sim.phases`` (e.g. "ia_tip" -> "I/A handpiece")."""
    return _INSTRUMENT_NAMES.get(instrument, instrument.replace("_", " "))


def phase_label(phase: Phase) -> str:
    """Readable label of a phase ("Capsule-Pulishing" -> "capsule polishing"); every instruction contains it."""
    return _PHASE_LABELS.get(phase.name, phase.name.replace("-", " ").lower())


def op_keywords(op: Operation) -> tuple[str, str]:
    """Lowercase (action word stem, instrument name) that every narration whose first operation is ``op`` contains."""
    return _op_text(op).keyword, instrument_name(op.instrument).lower()


def _op_text(op: Operation) -> _OpText:
    name = op.name.lower()
    default = _OpText(name, f"do the {name}", f"doing the {name}", f"the {name} is performed")
    return _OP_TEXT.get(op.name, default)


# ---------------------------------------------------------------------------------------------------------------
# Noise markers: what a clean instruction must not contain

NARRATION_NOISE: dict[str, tuple[str, ...]] = {
    "filler": (r"\b(?:um+|uh+|erm|hmm+)\b", r"\byou know\b", r"\balright\b", r"\bokay\b", r"\bguys\b",
               r"(?:^|[.!?]\s+)so\b", r"\bbasically\b", r"\bgonna\b"),
    "first_person": (r"\b(?:i|i'm|i'll|i've|i'd)\b(?!/)", r"\b(?:me|my|mine|we|we're|we'll|we've|us|our)\b",
                     r"\blet's\b"),
    "second_person": (r"\byou\b", r"\byour\b"),
    "timestamp": (r"\b\d{1,2}:\d{2}\b",),
    "url": (r"https?://", r"\bwww\.", r"\b\w+\.(?:com|net|org|ly|tv)\b"),
    "plug": (r"\bsubscribe\b", r"\bdescription\b", r"\blike button\b", r"\bchannel\b", r"\bpatreon\b",
             r"\bsponsor", r"\bnotification"),
    "off_topic": (r"\bweather\b", r"\bconference\b", r"\bsorry\b", r"\blighting\b", r"\bcoffee\b",
                  r"\bresidents?\b", r"\bweekend\b"),
    "repetition": (r"\b(\w+)\s+\1\b",),
}
_NOISE_RE = {kind: [re.compile(p, re.IGNORECASE) for p in pats] for kind, pats in NARRATION_NOISE.items()}


def noise_markers(text: str) -> list[str]:
    """Every narration artefact found in ``text`` as "kind:match" strings; [] for a clean instruction."""
    found = []
    for kind, patterns in _NOISE_RE.items():
        for pattern in patterns:
            found += [f"{kind}:{m.group(0).strip(' ,.!?')}" for m in pattern.finditer(text)]
    return found


# ---------------------------------------------------------------------------------------------------------------
# Narration

_OPENERS = ("okay so", "alright guys", "um so", "so", "okay", "alright so", "uh", "so um", "okay guys so",
            "alright", "so now", "okay um")
_CORE_TEMPLATES = (
    "now i'm going to {base} with the {inst}",
    "what i like to do here is {base} with my {inst}",
    "here i'm {gerund} using the {inst}",
    "you can see i'm {gerund} with the {inst}",
    "we're {gerund} now with a {inst}",
    "and then i just {base} with the {inst} nice and slow",
    "the {inst} goes in and i'm {gerund}",
    "let's {base} with the {inst}",
    "now we {base} using the {inst}",
    "this is the {name} step, i'm using the {inst}",
    "i'm gonna {base} with the {inst} here",
    "at this point i {base} with the {inst}",
    "next thing is to {base}, i use a {inst} for that",
    "so i take the {inst} and {base}",
    "i usually {base} with the {inst} at this stage",
    "here you see me {gerund} with the {inst}",
)
_TIP_TEMPLATES = ("make sure you {tip}", "always {tip}", "tip here, {tip}", "{tip}, that's important",
                  "and remember {tip}", "my advice is {tip}")
_OFF_TOPIC = (
    "don't forget to subscribe", "link in the description", "hit the like button", "sorry about the lighting",
    "sorry the video is a bit dark", "it's raining like crazy outside today", "the weather was terrible that week",
    "we recorded this at the conference last year", "check out my channel for more cases",
    "sorry the focus is a bit off", "my residents always ask about this", "more videos on www.eyesurgerytube.com",
    "follow us at eyesurgery.tv", "thanks to our sponsor for supporting the channel",
    "turn on notifications so you don't miss the next one", "i need more coffee for this one",
    "support us on patreon", "we'll talk about this at the conference", "see you guys next weekend",
)
_MISHEARD = (("phaco", "fako"), ("capsulorhexis", "capsule rexis"), ("viscoelastic", "visco elastic"),
             ("cannula", "canola"), ("keratome", "carrot tome"), ("cystotome", "sister tome"),
             ("nucleus", "new clears"), ("cortex", "core tex"), ("incision", "in session"),
             ("brunescent", "brunette scent"), ("iris", "irish"), ("rhexis", "rexes"), ("anterior", "and tear"))
_MID_FILLERS = ("um", "uh", "you know", "so", "basically", "uh you know")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _timestamp(seconds: float) -> str:
    """"m:ss" (or "h:mm:ss" past an hour) for a time in seconds."""
    s = int(max(0.0, seconds))
    h, m, s = s // 3600, (s // 60) % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _timestamp_phrase(rng: np.random.Generator, start_s: float) -> str:
    t = _timestamp(start_s + float(rng.uniform(0.0, 5.0)))
    forms = (f"at {t} you can see", f"({t})", f"[{t}]", f"around {t}", f"{t}", f"if you go back to {t}")
    return _pick(rng, forms)


def _patient_remark(rng: np.random.Generator, attrs: dict) -> str:
    """One spoken remark about the patient: lens density, iris colour, pupil size or eye side."""
    opacity = float(attrs.get("lens_opacity", 0.5))
    pupil = float(attrs.get("pupil_radius", 0.55))
    iris = str(attrs.get("iris_color", "brown"))
    side = str(attrs.get("eye_side", "right"))
    if opacity > 0.7:
        lens = ("this is a dense brunescent cataract", "really hard nucleus in this one", "very dense lens here")
    elif opacity > 0.4:
        lens = ("moderately dense nucleus here", "pretty standard grade three cataract", "medium density lens")
    else:
        lens = ("pretty soft lens in this one", "this is a fairly soft cataract", "soft nucleus, easy case")
    pupil_text = (("pupil isn't dilating great", "small pupil so be careful") if pupil < 0.45 else
                  ("nice big pupil", "well dilated pupil here") if pupil > 0.65 else ("decent pupil",))
    remarks = lens + pupil_text + (f"nice {iris} iris", f"{iris} eyes like this one", f"this is a {side} eye",
                                   f"{side} eye here, temporal approach")
    return _pick(rng, remarks)


def _mistranscribe(rng: np.random.Generator, text: str) -> str:
    """Replace one surgical word that ASR often mishears, if ``text`` has one."""
    present = [(w, m) for w, m in _MISHEARD if re.search(rf"\b{w}", text)]
    if not present:
        return text
    word, misheard = _pick(rng, present)
    return re.sub(rf"\b{word}", misheard, text, count=1)


def _repeat_word(rng: np.random.Generator, text: str) -> str:
    """Stutter: repeat one short word ("the the")."""
    words = text.split(" ")
    short = [i for i, w in enumerate(words) if w in ("the", "a", "and", "i", "to", "with", "this", "is")]
    if not short:
        return text
    i = _pick(rng, short)
    return " ".join(words[: i + 1] + [words[i]] + words[i + 1:])


def _core_clause(rng: np.random.Generator, op: Operation) -> str:
    text = _op_text(op)
    template = _pick(rng, _CORE_TEMPLATES)
    return template.format(base=text.base, gerund=text.gerund, name=op.name.lower(),
                           inst=instrument_name(op.instrument).lower())


def narration_caption(phase: Phase, operations, patient_attrs: dict, rng: np.random.Generator,
                      start_s: float) -> str:
    """A noisy, ASR-style narration of one clip (lowercase, fillers, timestamps, plugs, stutters).

    phase: the clip's phase; operations: the Operation objects in the clip (one or more; empty means the phase's
    first); patient_attrs: see the module docstring; rng: the only source of randomness; start_s: the clip's
    start time in the source video, in seconds (timestamps are drawn near it).
    Every narration contains, untouched by mis-transcription, the first operation's action phrase and
    instrument name (``op_keywords``) and at least one ``noise_markers`` hit.
    """
    ops = list(operations) or [phase.operations[0]]
    before, after = [], []
    if rng.random() < 0.6:
        before.append(_pick(rng, _OPENERS))
    if rng.random() < 0.3:
        before.append(_timestamp_phrase(rng, start_s))
    if len(ops) > 1 and rng.random() < 0.5:
        after.append("and then " + _core_clause(rng, ops[1]))
    if rng.random() < 0.35:
        after.append(_pick(rng, _TIP_TEMPLATES).format(tip=_pick(rng, _PHASE_TIPS.get(phase.name, ("go slow",)))))
    if rng.random() < 0.45:
        after.insert(int(rng.integers(len(after) + 1)), _patient_remark(rng, patient_attrs))
    if rng.random() < 0.4:
        after.append(_pick(rng, _OFF_TOPIC))
    if rng.random() < 0.2:
        after.append(_timestamp_phrase(rng, start_s))
    if rng.random() < 0.4:
        after.insert(int(rng.integers(len(after) + 1)), _pick(rng, _MID_FILLERS))
    if after and rng.random() < 0.35:
        k = int(rng.integers(len(after)))
        after[k] = _mistranscribe(rng, after[k])
    core = _core_clause(rng, ops[0])
    if rng.random() < 0.3:
        core = _repeat_word(rng, core)
    text = " ".join(before + [core]) + ("" if not after else _pick(rng, (", ", " ", ". ")) + ", ".join(after))
    if not noise_markers(text):
        text = _pick(rng, _OPENERS) + " " + text
    return text.lower()


# ---------------------------------------------------------------------------------------------------------------
# Instruction

_MAX_WORDS = 80
_INSTRUCTION_TEMPLATES = (
    "Surgical microscope view of cataract surgery, {label}: {clauses}, in {eye}.",
    "Cataract surgery, {label} phase. {Clauses}. The {side} eye has {patient}.",
    "A surgical video clip of the {label} phase of cataract surgery. {caption} {Clauses}.",
    "{Label} during cataract surgery under the operating microscope: {clauses}. The eye has {patient}.",
    "Operating microscope video of {label} in a {side} eye with {patient}: {clauses}.",
)


def _density_word(opacity: float) -> str:
    return "dense brunescent" if opacity > 0.7 else "moderately dense" if opacity > 0.4 else "mild"


def _pupil_word(radius: float) -> str:
    return "small" if radius < 0.45 else "widely dilated" if radius > 0.65 else "dilated"


def _patient_phrase(attrs: dict) -> str:
    """e.g. "a brown iris, a dilated pupil and a moderately dense cataract"."""
    iris = str(attrs.get("iris_color", "brown"))
    pupil = _pupil_word(float(attrs.get("pupil_radius", 0.55)))
    density = _density_word(float(attrs.get("lens_opacity", 0.5)))
    return f"a {iris} iris, a {pupil} pupil and a {density} cataract"


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


def instruction(phase: Phase, operations, patient_attrs: dict, rng: np.random.Generator) -> str:
    """A clean, third-person Ophora-style generation instruction for one clip (fewer than 80 words).

    Built from ``phase.caption_prompt``, the operations' actions and instruments and the patient's visible
    attributes; it always contains ``phase_label(phase)`` and never a ``noise_markers`` hit.
    """
    ops = list(operations) or [phase.operations[0]]
    clauses = ", then ".join(_op_text(op).clause for op in ops)
    fields = dict(label=phase_label(phase), clauses=clauses, caption=_first_sentence(phase.caption_prompt),
                  side=str(patient_attrs.get("eye_side", "right")), patient=_patient_phrase(patient_attrs))
    fields["eye"] = "an eye with " + fields["patient"]
    fields["Label"] = fields["label"][0].upper() + fields["label"][1:]
    fields["Clauses"] = clauses[0].upper() + clauses[1:]
    order = rng.permutation(len(_INSTRUCTION_TEMPLATES))
    for i in order:
        text = _INSTRUCTION_TEMPLATES[int(i)].format(**fields)
        if len(text.split()) < _MAX_WORDS:
            return text
    return f"{fields['Label']} during cataract surgery: {_op_text(ops[0]).clause}."
