"""The embedded caption rewriter: narration (ASR of a surgeon talking over a video) -> generation instruction.

Deterministic, no model. Steps, in order:

1. normalise: Unicode NFKC, control characters out, lowercase, common ASR confusions of ophthalmic terms
   fixed ("fako" -> "phaco");
2. strip what is never content: URLs, e-mail addresses, handles, hashtags, ``[music]``-style tags, timestamps
   with the words that point at them ("at 1:23 you can see");
3. split into clauses at sentence punctuation, commas, semicolons and "and then";
4. drop clauses that are plugs (subscribe, channel, sponsor ...) or off-topic remarks (weather, coffee,
   apologies about lighting ...), and clauses without any surgical vocabulary;
5. inside kept clauses: remove fillers ("um", "you know", "basically"), speaker frames ("what I like to do here
   is", "now I'm going to", "you can see"), first- and second-person words ("my" -> "the"), and repetitions
   ("the the", "make sure make sure");
6. capitalise, join as sentences, restore acronyms (IOL, I/A, OVD), and fit the T5 token budget by leaving out
   trailing sentences.

An empty caption, undecodable bytes or a caption with no surgical content left is a failure with a reason.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from ophora.curation.rewrite.tokens import estimate_t5_tokens, fit_sentences

__all__ = ["RewriteResult", "RulesRewriter", "SURGICAL_TERMS", "clean_caption_text", "decode_caption"]


@dataclass(frozen=True)
class RewriteResult:
    """One rewrite: ``text`` (None on failure), ``reason`` ("ok" or why it failed), ``scores`` (plain values)."""

    text: str | None
    reason: str
    scores: dict = field(default_factory=dict)


def _words(*items: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(items) + r")\b", re.IGNORECASE)


ASR_FIXES = {
    r"\bfako\b": "phaco", r"\bfaco\b": "phaco", r"\bcapsule ?rexis\b": "capsulorhexis",
    r"\bcapsulo ?rexis\b": "capsulorhexis", r"\brexis\b": "rhexis", r"\brexes\b": "rhexis",
    r"\bvisco ?elastic\b": "viscoelastic", r"\bcanola\b": "cannula", r"\bcarrot ?tome\b": "keratome",
    r"\bsister ?tome\b": "cystotome", r"\bcysto ?tome\b": "cystotome", r"\bnew clears\b": "nucleus",
    r"\bnuke lee us\b": "nucleus", r"\bcore tex\b": "cortex", r"\bin session\b": "incision",
    r"\bbrunette scent\b": "brunescent", r"\birish\b": "iris", r"\band tear chamber\b": "anterior chamber",
    r"\bi o l\b": "iol", r"\bhealthy on\b": "healon", r"\bsin ?ski\b": "sinskey", r"\bhydro dissection\b":
    "hydrodissection", r"\bphaco emulsification\b": "phacoemulsification", r"\bmalyugin\b": "malyugin",
}
_ASR = [(re.compile(p, re.IGNORECASE), r) for p, r in ASR_FIXES.items()]

_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
_NEVER_CONTENT = [
    re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE),
    re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    re.compile(r"\b[\w-]+\.(?:com|net|org|ly|tv|io|co|me|edu|info|gov)\b(?:/\S*)?", re.IGNORECASE),
    re.compile(r"(?<![\w/])[@#]\w+"),
    re.compile(r"\[[^\]]{0,30}\]|\((?:music|applause|laughter|inaudible)\)", re.IGNORECASE),
    re.compile(rf"\b(?:if you )?(?:go back to|skip to|jump to|fast forward to|at|around|from|until|till|by|"
               rf"see)\s+(?:about\s+)?(?:the\s+)?{_TIME}\b(?:\s+mark)?", re.IGNORECASE),
    re.compile(rf"\(\s*{_TIME}\s*\)|\b{_TIME}\b"),
    re.compile(r"\b(?:at\s+)?(?:the\s+)?\d+(?:\.\d+)?\s*(?:minute|min|second|sec)s?\s+(?:mark|in)\b",
               re.IGNORECASE),
]
_LINKS, _TAGS, _TIMES = _NEVER_CONTENT[:4], _NEVER_CONTENT[4], _NEVER_CONTENT[5:]
_LINK = "zzlinkzz"  # stands in for a URL, address or handle so that clause splitting keeps it whole

PLUG = _words(r"subscrib\w*", r"like button", r"hit (?:the )?like", r"thumbs? up", r"channel", r"patreon",
              r"sponsor\w*", r"notifications?", r"bell icon", r"description", r"links? (?:below|in)",
              r"comments?(?: below| section)?", r"follow (?:us|me)", r"instagram", r"twitter", r"facebook",
              r"tiktok", r"youtube", r"website", r"check out", r"thanks? (?:you )?for watching", r"see you",
              r"merch", r"discount", r"promo", r"webinar", r"course", r"newsletter", r"share this",
              r"podcast", r"support us", r"my other videos?", r"next video", r"previous video")
OFF_TOPIC = _words(r"weather", r"rain\w*", r"snow\w*", r"coffee", r"lunch", r"breakfast", r"conference",
                   r"congress", r"meeting", r"vacation", r"holiday", r"weekend", r"traffic", r"sorry",
                   r"apologi\w*", r"excuse", r"lighting", r"audio", r"sound", r"microphone", r"mic", r"camera",
                   r"focus is", r"video quality", r"recorded", r"recording", r"residents?", r"fellows?",
                   r"students?", r"wife", r"husband", r"kids", r"family", r"birthday", r"music", r"song",
                   r"funny", r"joke", r"lol", r"haha")

SURGICAL_TERMS = (
    r"incis\w*", r"keratome", r"blade", r"paracentesis", r"side[- ]?port", r"wounds?", r"corne\w*", r"limb\w*",
    r"scler\w*", r"conjunctiv\w*", r"viscoelastic", r"visco", r"ovd", r"healon", r"viscoat", r"cannula",
    r"chamber", r"capsul\w*", r"rhexis", r"ccc", r"cystotome", r"forceps", r"utrata", r"flap", r"hydro\w*",
    r"nucle\w*", r"endonucleus", r"epinucleus", r"phaco\w*", r"emulsif\w*", r"chop\w*", r"quadrants?",
    r"groove", r"sculpt\w*", r"crack\w*", r"cortex", r"cortical", r"aspirat\w*", r"irrigat\w*", r"i/a",
    r"polish\w*", r"iol", r"intraocular", r"lens", r"haptics?", r"optic", r"injector", r"cartridge",
    r"sinskey", r"hook", r"bag", r"sulcus", r"zonul\w*", r"iris", r"pupil\w*", r"miotic", r"miochol",
    r"miostat", r"malyugin", r"ring", r"trypan", r"stain\w*", r"antibiotic", r"cefuroxime", r"moxifloxacin",
    r"sutur\w*", r"stroma\w*", r"cataract", r"brunescent", r"vitre\w*", r"retina\w*", r"macula\w*",
    r"eyes?", r"tip", r"sleeve", r"handpiece", r"needle", r"spatula", r"vacuum", r"ultrasound",
    r"periphery", r"peripheral", r"anterior", r"posterior", r"surg\w*", r"microscope", r"speculum",
    r"trabecul\w*", r"glaucoma", r"dilat\w*", r"epithel\w*", r"endotheli\w*", r"instrument\w*", r"fluid",
    r"bss", r"balanced salt", r"wave", r"haptic\w*", r"angle", r"cautery", r"tunnel", r"heminucleus",
)
_SURGICAL = _words(*SURGICAL_TERMS)

_FILLERS = _words(r"u+m+", r"u+h+", r"e+r+m*", r"h+m+", r"mm+", r"a+h+", r"you know", r"i mean", r"basically",
                  r"actually", r"literally", r"kind of", r"sort of", r"like i said", r"okay", r"ok", r"alright",
                  r"all right", r"guys", r"folks", r"everybody", r"everyone", r"gonna", r"wanna", r"yeah",
                  r"(?:as )?(?:you|we) can (?:see|notice)", r"you see", r"right\?",
                  r"(?:my|our) (?:advice|tip) is(?: to)?",
                  r"make sure (?:that )?you", r"you (?:want|need)(?= (?:a|an|the|to)\b)(?: to)?")
_LEADING = re.compile(r"^(?:(?:so|now|well|and|but|then|right(?=,)|yes|oh|anyway|also|here|next|just|again|"
                      r"finally|first|ok|okay)\b(?! (?:thing|step)\b)[\s,]*)+", re.IGNORECASE)
_FRAMES = [re.compile(p, re.IGNORECASE) for p in (
    r"^what (?:i|we) (?:like|want|try|prefer|tend|need|have) to do (?:here |now |next |at this point )?is (?:to )?",
    r"^(?:the )?(?:next|first) (?:thing|step) (?:is|(?:i|we) do is) (?:to )?",
    r"^(?:i'm|i am|we're|we are) (?:going to|gonna|about to|trying to|just going to|now going to) ",
    r"^(?:i'll|we'll|i will|we will|let's|let me|let us) ",
    r"^(?:i|we) (?:want to|like to|need to|have to|usually|always|just|then|now|also|prefer to|tend to|try to) ",
    r"^(?:you|u) (?:can|could|will|might|may) (?:see|notice|appreciate) (?:that |how |here |now |me |us |i'm |we're )?",
    r"^(?:you|u) (?:see|notice|saw) (?:me |us |that |how |i'm |we're )?",
    r"^(?:you'll|you will|we'll|we will) (?:see|notice) (?:that |how )?",
    r"^as (?:you|u) can see,? ",
    r"^(?:make sure|remember|be sure|don't forget) (?:that )?(?:you |u )?(?:to )?",
    r"^(?:you|u) (?:want|need|have|got) to ",
    r"^(?:you|u) (?:want|need) (?=(?:a|an|the|some) )",
    r"^thing is (?:to )?",
    r"^(?:my|our) (?:advice|tip|recommendation|preference|trick) (?:here )?is (?:to )?",
    r"^tip(?: here)?,? ",
    r"^at this (?:point|stage),? ",
    r"^this is (?:the|a|an) ",
    r"^(?:i'm|i am|we're|we are|i've|we've|i|we) ",
)]
_INNER_SPEAKER = re.compile(r"\b(and|then|so|now)\s+(?:i'm|i am|we're|we are|i|we)\b", re.IGNORECASE)
_POSSESSIVE = _words(r"my", r"our", r"your")
_PERSON = re.compile(r"\b(?:i'm|i am|i've|i'll|i'd|we're|we've|we'll|we'd|you're|you'll|you've|let's|me|us|"
                     r"you|u|we|i(?![/\w]))\b", re.IGNORECASE)
_CLAUSE_SPLIT = re.compile(r"(?:[.!?;]+(?=\s|$)|,)\s*|\s+(?:and then|and now|after that)\s+", re.IGNORECASE)
_ACRONYMS = {r"\biol\b": "IOL", r"\bi/a\b": "I/A", r"\bovd\b": "OVD", r"\bccc\b": "CCC", r"\bbss\b": "BSS",
             r"\bsinskey\b": "Sinskey", r"\butrata\b": "Utrata", r"\bhealon\b": "Healon",
             r"\bmalyugin\b": "Malyugin", r"\bmiochol\b": "Miochol"}


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    text = text.replace("\u2019", "'").lower()
    for pattern, fix in _ASR:
        text = pattern.sub(fix, text)
    return re.sub(r"\s+", " ", text).strip()


def _collapse_repeats(text: str) -> str:
    for n in (4, 3, 2, 1):
        phrase = r"\w+(?:'\w+)?" + r"(?:\s+\w+(?:'\w+)?)" * (n - 1)
        text = re.sub(rf"\b({phrase})(?:\s+\1\b)+", r"\1", text, flags=re.IGNORECASE)
    return text


def _strip_frames(clause: str) -> str:
    previous = None
    while previous != clause:
        previous = clause
        clause = _LEADING.sub("", clause).strip()
        for frame in _FRAMES:
            clause = frame.sub("", clause).strip()
    return clause


def clean_caption_text(clause: str) -> str:
    """One clause without fillers, speaker frames, first/second person and repetitions (lowercase)."""
    clause = _FILLERS.sub(" ", clause)
    clause = _collapse_repeats(re.sub(r"\s+", " ", clause).strip())
    clause = _strip_frames(clause)
    clause = _INNER_SPEAKER.sub(r"\1", clause)
    clause = _POSSESSIVE.sub("the", clause)
    clause = _PERSON.sub(" ", clause)
    clause = _collapse_repeats(re.sub(r"\s+", " ", clause).strip())
    clause = _strip_frames(clause)
    return re.sub(r"^(?:and|or|but|so|then|the end)\b\s*|\s+(?:and|or|but|so|the|a|with|to)$", "",
                  clause).strip(" -'\"")


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE_SPLIT.split(text) if c and c.strip()]


# Where an unpunctuated clause may turn to another topic ("... nice and slow it's raining outside today").
_TOPIC_TURN = re.compile(r"\s+(?=(?:it's|it is|we|we're|we'll|i|i'm|i'll|i need|you|don't|sorry|thanks|thank|"
                         r"check|hit|follow|see|support|more|turn|subscribe|my|our|the weather|this (?:video|was))\b)",
                         re.IGNORECASE)


def _keep_clause(raw: str) -> list[str]:
    """Cleaned parts of a clause: [] for a plug, an off-topic remark or a clause without a surgical word.

    A clause mixing surgery with a plug or remark is cut where the topic may turn and judged part by part.
    """
    if _LINK in raw or PLUG.search(raw) or OFF_TOPIC.search(raw):
        parts = _TOPIC_TURN.split(raw)
        if len(parts) == 1:
            return []
        first_turn = next((i for i, p in enumerate(parts) if _LINK in p or PLUG.search(p) or OFF_TOPIC.search(p)), 0)
        merged = " ".join(parts[:first_turn])  # what follows a turn to a plug or remark is part of it
        cleaned = _clean_clause(merged) if merged else None
        return [cleaned] if cleaned else []
    cleaned = _clean_clause(raw)
    return [cleaned] if cleaned else []


def _clean_clause(raw: str) -> str | None:
    stripped = raw
    for pattern in _TIMES:
        stripped = pattern.sub(" ", stripped)
    cleaned = clean_caption_text(stripped)
    return cleaned if cleaned and _SURGICAL.search(cleaned) and len(cleaned.split()) >= 2 else None


def _sentence(clause: str) -> str:
    for pattern, fix in _ACRONYMS.items():
        clause = re.sub(pattern, fix, clause)
    return clause[0].upper() + clause[1:] + "."


class RulesRewriter:
    """Deterministic narration -> instruction rewriting (see the module docstring).

    ``max_tokens``: token budget including the end token; ``count``: token counter (text -> int);
    ``max_input_chars``: captions are cut to this many characters first.
    """

    version = "rules-v1"

    def __init__(self, max_tokens: int = 226, count=estimate_t5_tokens, max_input_chars: int = 8000):
        self.max_tokens, self.count, self.max_input_chars = max_tokens, count, max_input_chars

    def rewrite(self, caption: str | bytes) -> RewriteResult:
        text, problem = decode_caption(caption)
        if problem:
            return RewriteResult(None, problem)
        scores = {"input_chars": len(text), "input_truncated": len(text) > self.max_input_chars}
        text = _normalise(text[: self.max_input_chars])
        for pattern in _LINKS:  # before clause splitting would cut them at their dots
            text = pattern.sub(f" {_LINK} ", text)
        text = _TAGS.sub(" ", text)
        kept, seen = [], set()
        for clause in _clauses(text):
            for cleaned in _keep_clause(clause):
                if cleaned not in seen:
                    seen.add(cleaned)
                    kept.append(_sentence(cleaned))
        scores["clauses_kept"] = len(kept)
        if not kept:
            return RewriteResult(None, "no surgical content left after removing fillers, plugs and off-topic "
                                       "remarks", scores)
        instruction, truncated = fit_sentences(kept, self.max_tokens, self.count)
        scores.update(tokens=self.count(instruction), output_truncated=truncated)
        if not instruction:
            return RewriteResult(None, f"no sentence fits the {self.max_tokens}-token budget", scores)
        return RewriteResult(instruction, "ok", scores)

    def rewrite_many(self, captions) -> list[RewriteResult]:
        return [self.rewrite(c) for c in captions]


def decode_caption(caption: str | bytes) -> tuple[str, str | None]:
    """(text, problem): bytes must be UTF-8; U+FFFD marks bytes that were undecodable when the manifest was read."""
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as err:
            return "", f"caption is not valid UTF-8 ({err.reason} at byte {err.start})"
    if "\ufffd" in caption or any(0xD800 <= ord(c) <= 0xDFFF for c in caption):
        return "", "caption is not valid UTF-8 (undecodable bytes in the manifest)"
    if not caption.strip():
        return "", "empty caption"
    return caption, None
