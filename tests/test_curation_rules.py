"""The embedded caption rewriter on narration written for these tests (surgeons' YouTube style, not OphSim's).

Each caption lists surgical words that must survive; every output must be free of fillers, first- and
second-person speech, timestamps, links, plugs and off-topic remarks (``noise_markers``, the OphSim helper,
plus checks of our own), and fit the T5 budget.
"""
import re

import pytest

from ophora.curation.config import RewriteConfig
from ophora.curation.rewrite import RewriteStage, make_rewriter
from ophora.curation.rewrite.rules import RulesRewriter
from ophora.curation.rewrite.tokens import estimate_t5_tokens, fit_sentences
from ophora.curation.stage import ClipItem
from ophora.sim.captions import noise_markers

# (narration, words that must be kept)
NARRATIONS = [
    ("Hey everyone, welcome back to the channel. Today we have a dense brunescent cataract, so I'm going to use a "
     "chop technique with the phaco tip.", ["brunescent cataract", "phaco tip"]),
    ("okay so um first thing I do is the paracentesis with the 15 degree blade, nice and small",
     ["paracentesis", "blade"]),
    ("Now I'm filling the anterior chamber with Healon, you want to fill it all the way to the angle.",
     ["anterior chamber", "Healon"]),
    ("at 1:32 you can see I'm starting the capsulorhexis with the cystotome, I like a small flap",
     ["capsulorhexis", "cystotome", "flap"]),
    ("so here I regrasp the flap with my Utrata forceps, uh, keep it nice and round, about 5 and a half "
     "millimeters", ["flap", "Utrata forceps"]),
    ("Don't forget to hit that subscribe button and the bell icon! Now hydrodissection with the cannula, you'll "
     "see the fluid wave go across", ["hydrodissection", "cannula", "fluid wave"]),
    ("uh the nucleus is rotating freely now which is what we want, um, good", ["nucleus", "rotating"]),
    ("I'm sculpting a central groove here with the phaco, low vacuum, sorry the focus is a little off guys",
     ["central groove", "phaco"]),
    ("and now we crack the nucleus into two halves with the chopper, you know, just push apart",
     ["nucleus", "chopper"]),
    ("Check out the link in the description for my full course on phaco chop. Here I'm chopping the heminucleus "
     "with a horizontal chop", ["heminucleus", "horizontal chop"]),
    ("so the quadrants are coming out nicely, I'm emulsifying this last quadrant at the pupil plane",
     ["quadrant", "pupil plane"]),
    ("OK so now I/A, I'm aspirating the cortex, I always do the subincisional cortex last",
     ["cortex", "subincisional"]),
    ("we're polishing the posterior capsule now with the polisher, very gentle, this is where you can get a "
     "capsule rupture", ["posterior capsule", "polisher"]),
    ("alright guys so I'm loading the IOL into the cartridge, this is a one piece acrylic lens",
     ["IOL", "cartridge", "acrylic lens"]),
    ("and the injector goes through the main wound, the leading haptic unfolds in the bag, beautiful",
     ["injector", "haptic", "bag"]),
    ("using the Sinskey hook I'm dialing the lens into the bag, you know, trailing haptic goes under the "
     "anterior capsule", ["Sinskey hook", "haptic", "anterior capsule"]),
    ("[Music] so now we remove the viscoelastic behind the lens, rock the optic a bit, um um um",
     ["viscoelastic", "optic"]),
    ("Then I hydrate the wounds with BSS on a 27 gauge cannula, check that they're sealed",
     ["wounds", "cannula"]),
    ("intracameral cefuroxime goes in at the end, follow us on Instagram @eyesurgeonlive for more",
     ["cefuroxime"]),
    ("here I'm injecting Miochol to bring the pupil down, uh, it's been a long day, lol",
     ["Miochol", "pupil"]),
    ("so this patient had a small pupil so I put in a Malyugin ring with the injector, visit "
     "www.eyecasesonline.com for the full video", ["Malyugin ring", "injector"]),
    ("trypan blue to stain the capsule because it's a white cataract, I I I really like trypan",
     ["trypan blue", "capsule", "white cataract"]),
    ("okay um you can see there is a zonular dialysis here at 3 o'clock so I'm gonna be careful with the phaco",
     ["zonular dialysis", "phaco"]),
    ("this video is sponsored by our friends at a lens company, anyway, I'm inserting a capsular tension ring "
     "now", ["capsular tension ring"]),
    ("the vitreous is presenting so we're doing an anterior vitrectomy with the vitrector, sorry about the "
     "audio", ["anterior vitrectomy", "vitrector"]),
    ("my residents always ask me about this, the incision should be square, 2.2 millimeters with the keratome",
     ["incision", "keratome"]),
    ("(2:45) I'm closing the conjunctiva over the scleral tunnel with cautery, thanks for watching!",
     ["conjunctiva", "scleral tunnel"]),
    ("so so so basically the the the phaco sleeve is is leaking a bit so I increase the bottle height",
     ["phaco sleeve", "bottle height"]),
    ("email me at dr.smith@eyeclinic.org if you have questions, and here the IOL is well centered in the bag",
     ["IOL", "bag"]),
    ("Good morning from sunny Florida, the weather is amazing today! We're making a temporal clear corneal "
     "incision", ["clear corneal incision"]),
    ("at 10:05 the fako tip is in the bag and I'm doing divide and conquer on this nucleus",
     ["phaco tip", "divide and conquer", "nucleus"]),
    ("ok uh you know what, let me just show you the rhexis again, it's a continuous curvilinear capsulorhexis",
     ["continuous curvilinear capsulorhexis"]),
]

FIRST_OR_SECOND_PERSON = re.compile(r"\b(?:i|i'm|me|my|we|we're|us|our|you|your|you'll|let's)\b(?!/)", re.IGNORECASE)
NOISE = re.compile(r"\d{1,2}:\d{2}|www\.|@|https?://|subscribe|channel|description|instagram|sponsor|weather|"
                   r"\bum\b|\buh\b|you know|\blol\b|music", re.IGNORECASE)


@pytest.fixture(scope="module")
def rewriter():
    return RulesRewriter()


@pytest.mark.parametrize("caption, keep", NARRATIONS, ids=[f"n{i:02d}" for i in range(len(NARRATIONS))])
def test_rules_rewrite_keeps_surgery_and_drops_narration_noise(rewriter, caption, keep):
    result = rewriter.rewrite(caption)
    assert result.text is not None, result.reason
    lowered = result.text.lower()
    for words in keep:
        assert words.lower() in lowered, f"{words!r} lost: {result.text!r}"
    assert not noise_markers(result.text), (noise_markers(result.text), result.text)
    assert not FIRST_OR_SECOND_PERSON.search(result.text), result.text
    assert not NOISE.search(result.text), result.text
    assert not re.search(r"\b(\w+)\s+\1\b", result.text, re.IGNORECASE), result.text
    assert result.text[0].isupper() and result.text.endswith(".")
    assert estimate_t5_tokens(result.text) <= 226


def test_there_are_enough_narrations():
    assert len(NARRATIONS) >= 30


def test_rewrite_is_deterministic(rewriter):
    first = [rewriter.rewrite(c).text for c, _ in NARRATIONS[:8]]
    assert first == [rewriter.rewrite(c).text for c, _ in NARRATIONS[:8]]


@pytest.mark.parametrize("caption, reason", [
    ("", "empty caption"), ("   \n\t ", "empty caption"),
    ("thanks for watching guys, see you next week, don't forget to subscribe", "no surgical content"),
    ("um um you know okay", "no surgical content"),
    ("the phaco tip \ufffd\ufffd is in the bag", "not valid UTF-8"),
    (b"the phaco tip \xff\xfe is in the bag", "not valid UTF-8"),
])
def test_unusable_captions_fail_with_a_reason(rewriter, caption, reason):
    result = rewriter.rewrite(caption)
    assert result.text is None and reason in result.reason


def test_utf8_bytes_are_accepted(rewriter):
    assert "capsulorhexis" in rewriter.rewrite("the capsulorhexis is done with forceps".encode()).text.lower()


def test_oversized_caption_is_cut_and_fits_the_budget(rewriter):
    caption = " ".join(f"now I'm aspirating the cortex in quadrant {i} with the I/A handpiece, um."
                       for i in range(3000))
    result = rewriter.rewrite(caption)
    assert result.text is not None
    assert result.scores["input_truncated"] and result.scores["output_truncated"]
    assert estimate_t5_tokens(result.text) <= 226 and result.scores["tokens"] <= 226
    assert not noise_markers(result.text)


def test_token_estimate_over_counts_words_and_counts_digits_and_punctuation():
    assert estimate_t5_tokens("") == 1
    assert estimate_t5_tokens("the lens") == 1 + 1 + 2
    assert estimate_t5_tokens("phacoemulsification") == 1 + 7
    assert estimate_t5_tokens("2.2 mm") == 1 + 3 + 1
    text = "A keratome creates a self-sealing main incision in the clear cornea."
    assert estimate_t5_tokens(text) >= 1.3 * len(text.split())


def test_fit_sentences_leaves_out_trailing_sentences_then_cuts_words():
    sentences = ["One two three.", "Four five six.", "Seven eight nine."]
    count = lambda text: len(text.split())  # noqa: E731
    assert fit_sentences(sentences, 6, count) == ("One two three. Four five six.", True)
    assert fit_sentences(sentences, 100, count) == (" ".join(sentences), False)
    assert fit_sentences(["a b c d e f"], 3, count) == ("a b c.", True)


def test_rewrite_stage_drops_unusable_captions_and_records_the_instruction(tmp_path):
    stage = RewriteStage(RewriteConfig())
    items = [ClipItem("a", NARRATIONS[1][0], tmp_path / "a.mp4"), ClipItem("b", "", tmp_path / "b.mp4")]
    kept, dropped = stage.check_many(items)
    assert kept.keep and kept.output == items[0].instruction and "paracentesis" in kept.output
    assert not dropped.keep and not dropped.error and dropped.reason == "empty caption"
    assert kept.version.startswith("rewrite/v1+") and kept.version.endswith("rules-v1")
    assert isinstance(make_rewriter(RewriteConfig()), RulesRewriter)
