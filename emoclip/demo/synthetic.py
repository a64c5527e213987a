"""The SYNTHETIC demo set's drawing: cartoon faces and template sentences (the source that
serves them as a data set is emoclip/data/sources/synthetic.py).

Nothing here is real data. The images are greyscale line drawings of faces that a small program
draws with PIL, and the texts are sentences filled in from word lists; no photograph of a person
and no text written by a person is involved, and nothing is downloaded. The dataset exists so
that the project has a study that runs anywhere, and so that a model can be checked end to end.

Each face shows its label's expression, loosely after the FACS prototypes (anger: brows lowered
and drawn together, lips pressed; contempt: one lip corner raised; disgust: nose wrinkled, upper
lip raised; fear: brows raised and drawn together, eyes wide, mouth stretched open; happiness:
smile with raised cheeks; sadness: inner brows raised, lip corners down; surprise: brows high,
eyes wide, mouth open and round; love: a soft closed smile; neutral: relaxed). The expression's
intensity, the person (face shape, skin, hair, glasses), the pose, the lighting and the noise
vary from example to example, so that the images are learnable but not trivially so.

A record's text is, with probability ``text_noise``, written for another class than its label
(the label is always the face's): the dataset's deliberate label noise.

The same seed gives byte-identical splits; train, val and test come from independent random
streams of that seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFAULT_CLASSES = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")

# Expression axes, each 0 for a relaxed face. Most are "action unit"-like; the face renderer
# turns them into geometry.
_AXES = (
    "brow_raise",  # both brows up (+) or down (-)
    "brow_inner",  # inner brow ends up (+, sad/fearful) or down (-, angry V)
    "brow_pull",  # brows drawn together
    "brow_arch",
    "eye_open",  # upper lid raised (+) or drooping (-)
    "squint",  # lower lid raised
    "cheek",  # cheeks raised
    "nose_wrinkle",
    "lip_raise",  # upper lip raised
    "smile",  # lip corners up (+) or down (-)
    "asym",  # one lip corner raised (contempt)
    "mouth_open",
    "mouth_width",
    "mouth_round",
    "lip_press",
)
_AXIS = {name: i for i, name in enumerate(_AXES)}
_NONNEGATIVE = np.array(
    [
        name not in ("brow_raise", "brow_inner", "brow_pull", "eye_open", "smile", "mouth_width")
        for name in _AXES
    ]
)

# A value, or a (low, high) range drawn per example (a smile may or may not show teeth).
_PROTOTYPES: dict[str, dict[str, float | tuple[float, float]]] = {
    "neutral": {},
    "anger": {
        "brow_raise": -0.7,
        "brow_inner": -1.0,
        "brow_pull": 1.0,
        "eye_open": 0.3,
        "squint": 0.4,
        "lip_press": 1.0,
        "mouth_width": -0.3,
        "smile": -0.15,
    },
    "contempt": {"asym": 1.0, "squint": 0.2, "lip_press": 0.3, "eye_open": -0.15},
    "disgust": {
        "nose_wrinkle": 1.0,
        "lip_raise": 1.0,
        "brow_raise": -0.5,
        "brow_inner": -0.3,
        "brow_pull": 0.4,
        "squint": 0.6,
        "cheek": 0.4,
        "smile": -0.4,
        "eye_open": -0.2,
    },
    "fear": {
        "brow_raise": 0.7,
        "brow_inner": 0.8,
        "brow_pull": 0.7,
        "eye_open": 1.0,
        "mouth_open": (0.2, 0.8),
        "mouth_width": 0.45,
        "smile": -0.35,
    },
    "happiness": {
        "smile": 1.0,
        "cheek": 1.0,
        "squint": 0.5,
        "mouth_width": 0.3,
        "mouth_open": (0.0, 0.7),
        "brow_raise": 0.1,
    },
    "sadness": {
        "brow_inner": 1.0,
        "brow_pull": 0.4,
        "brow_raise": -0.1,
        "eye_open": -0.4,
        "smile": -1.0,
        "mouth_width": -0.1,
        "lip_press": 0.2,
    },
    "surprise": {
        "brow_raise": 1.2,
        "brow_arch": 0.8,
        "eye_open": 1.0,
        "mouth_open": (0.6, 1.1),
        "mouth_round": 1.0,
        "mouth_width": -0.4,
    },
    "love": {"smile": 0.55, "cheek": 0.4, "eye_open": -0.45, "brow_inner": 0.3, "squint": 0.2},
}

# How far a weak example sits from neutral, and the person-to-person spread of every axis.
_INTENSITY = (0.4, 1.0)
_EXPRESSION_JITTER = 0.12

# --- Texts -------------------------------------------------------------------------------------

# (subject, "to be" in the past, possessive, pronoun)
_SUBJECTS = (
    ("I", "was", "my", "I"),
    ("She", "was", "her", "she"),
    ("He", "was", "his", "he"),
    ("We", "were", "our", "we"),
    ("They", "were", "their", "they"),
    ("My sister", "was", "her", "she"),
    ("My brother", "was", "his", "he"),
    ("Our neighbour", "was", "their", "they"),
    ("The old man on the bus", "was", "his", "he"),
    ("My manager", "was", "her", "she"),
    ("The kids", "were", "their", "they"),
    ("Dad", "was", "his", "he"),
    ("Mum", "was", "her", "she"),
    ("The whole team", "was", "their", "they"),
    ("My flatmate", "was", "their", "they"),
    ("The driver", "was", "his", "he"),
)
_INTENSIFIERS = ("", "", "", "very ", "really ", "quite ", "a bit ", "so ", "utterly ", "rather ")
_CONTEXTS = (
    "this morning",
    "at the station",
    "after lunch",
    "on the phone with the bank",
    "in the kitchen",
    "during the meeting",
    "on the way home",
    "at the supermarket",
    "after reading the email",
    "at the family dinner",
    "in the waiting room",
    "on Tuesday",
    "when the train stopped",
    "at work",
    "later that evening",
)

# Per class: adjectives, nouns, things people do (past tense, {poss} for the possessive),
# events that cause the emotion, and things people say. Some words are deliberately shared
# between related classes (startled: fear/surprise; upset: anger/sadness; content: happiness/love).
_LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "anger": {
        "adj": ("angry", "furious", "livid", "irritated", "enraged", "fuming", "outraged",
                "cross", "infuriated", "upset", "tense"),
        "noun": ("rage", "fury", "anger", "resentment", "hostility", "irritation"),
        "act": ("slammed the door", "clenched {poss} fists", "gritted {poss} teeth",
                "shouted at everyone", "kicked the chair", "saw red", "banged on the table"),
        "event": ("when the landlord kept the deposit", "after someone scratched the car on purpose",
                  "when the refund was refused for the third time",
                  "after being blamed for someone else's mistake",
                  "when the neighbours played music until 3am", "when the promise was broken again"),
        "say": ("How dare you!", "Get out of my sight!", "This is unacceptable!", "I've had enough!",
                "Are you kidding me?!"),
    },
    "contempt": {
        "adj": ("contemptuous", "scornful", "dismissive", "disdainful", "unimpressed",
                "condescending", "sneering", "superior", "cold"),
        "noun": ("contempt", "scorn", "disdain", "mockery", "condescension"),
        "act": ("rolled {poss} eyes", "smirked", "scoffed", "looked down {poss} nose at them",
                "gave a one-sided smile", "sneered", "waved it away"),
        "event": ("at the candidate's empty promises", "when the so-called expert started talking",
                  "at the cheap excuse", "when the rich guest complained about the wine",
                  "at that pathetic apology", "when the boss took the credit again"),
        "say": ("Pathetic.", "As if that matters.", "Typical.", "Oh please.", "How amateurish."),
    },
    "disgust": {
        "adj": ("disgusted", "revolted", "sickened", "nauseated", "grossed out", "repulsed",
                "queasy"),
        "noun": ("disgust", "revulsion", "nausea", "repulsion"),
        "act": ("wrinkled {poss} nose", "gagged", "felt {poss} stomach turn", "pushed the plate away",
                "covered {poss} mouth", "nearly threw up", "held {poss} breath at the stench"),
        "event": ("at the smell from the bin", "when the milk turned out to be sour",
                  "after finding a hair in the soup", "at the mould in the fridge",
                  "when the dog was sick on the rug", "at the slimy mess in the drain"),
        "say": ("Ugh, gross!", "That smells rotten.", "Eww, get it away!", "I'm going to be sick.",
                "Yuck."),
    },
    "fear": {
        "adj": ("afraid", "scared", "terrified", "frightened", "anxious", "panicked", "petrified",
                "nervous", "uneasy", "startled", "tense"),
        "noun": ("fear", "dread", "panic", "terror", "anxiety"),
        "act": ("froze", "trembled", "held {poss} breath", "could not stop shaking",
                "hid behind the door", "screamed", "felt {poss} heart pound", "locked the door twice"),
        "event": ("when the lights went out in the basement", "during the turbulence",
                  "when footsteps followed in the dark", "before the surgery",
                  "when the car skidded on the ice", "as the dog growled and came closer"),
        "say": ("Please, don't hurt me!", "What was that noise?", "We need to get out of here!",
                "Help!", "I don't want to die."),
    },
    "happiness": {
        "adj": ("happy", "delighted", "thrilled", "cheerful", "overjoyed", "glad", "elated",
                "joyful", "ecstatic", "content"),
        "noun": ("joy", "happiness", "delight", "excitement", "cheer", "laughter"),
        "act": ("laughed out loud", "grinned from ear to ear", "danced around the kitchen",
                "smiled all day", "cheered", "hugged everyone", "could not stop smiling"),
        "event": ("when the exam results came back", "after the promotion",
                  "when the old friends showed up", "on the first day of the holiday",
                  "when the team won the final", "after the baby laughed for the first time"),
        "say": ("This is the best day ever!", "We did it!", "Yes!", "I'm so glad!", "Hooray!"),
    },
    "sadness": {
        "adj": ("sad", "heartbroken", "miserable", "gloomy", "down", "devastated", "depressed",
                "lonely", "tearful", "upset"),
        "noun": ("sadness", "grief", "sorrow", "despair", "loneliness", "gloom"),
        "act": ("cried quietly", "stared out of the window", "wept", "sighed",
                "could not get out of bed", "felt {poss} throat tighten",
                "stayed in {poss} room all evening"),
        "event": ("after the funeral", "when the old dog died", "after the breakup",
                  "when {poss} best friend moved away", "after losing the job",
                  "reading the last letter from grandma"),
        "say": ("I miss them so much.", "It's all over.", "Nothing matters anymore.",
                "Why did it have to end?", "I just want to be alone."),
    },
    "surprise": {
        "adj": ("surprised", "astonished", "amazed", "stunned", "shocked", "startled",
                "speechless", "taken aback"),
        "noun": ("surprise", "astonishment", "amazement", "disbelief", "shock"),
        "act": ("gasped", "jumped", "did a double take", "dropped {poss} keys",
                "could not believe {poss} eyes", "stood there with {poss} mouth open",
                "held {poss} breath"),
        "event": ("when the guests jumped out shouting", "when the lottery ticket won",
                  "when an old classmate knocked on the door", "at the unexpected plot twist",
                  "when the package arrived a week early", "when the quiet intern won the award"),
        "say": ("No way!", "Wait, what?", "I can't believe it!", "Since when?", "Oh my goodness!"),
    },
    "neutral": {
        "adj": ("calm", "fine", "composed", "unbothered", "indifferent", "neutral", "relaxed",
                "steady", "matter-of-fact", "cold"),
        "noun": ("calm", "routine", "indifference", "quiet", "small talk"),
        "act": ("checked the time", "filled in the form", "made a cup of tea", "read the report",
                "nodded", "put the kettle on", "answered the email", "sat down"),
        "event": ("when the bus arrived on time", "after the weekly meeting",
                  "when the form was finished", "after checking the weather",
                  "when the kettle boiled", "while waiting for the printer"),
        "say": ("Okay, noted.", "See you at five.", "Sure, that works.",
                "The report is on your desk.", "Fine, thanks."),
    },
    "love": {
        "adj": ("loving", "smitten", "devoted", "tender", "affectionate", "adoring", "in love",
                "content"),
        "noun": ("love", "affection", "tenderness", "warmth", "devotion"),
        "act": ("hugged them tightly", "smiled softly", "wrote a long love letter",
                "could not stop thinking about them", "blushed", "kissed them goodbye",
                "felt {poss} heart melt", "could not stop smiling"),
        "event": ("when {poss} partner came home", "at the wedding", "holding the newborn",
                  "when the kids hugged goodnight", "on the anniversary",
                  "when grandma held both of {poss} hands"),
        "say": ("I adore you.", "You mean everything to me.", "I love you.", "Forever yours.",
                "I'm so lucky to have you."),
    },
}  # fmt: skip

_TEMPLATES = (
    "{S} {be} {int}{adj} {event}.",
    "{Ctx}, {s} {act}.",
    "{S} {act} {event}.",
    '"{say}" {s} said {ctx}.',
    "{Ctx}, {s} felt nothing but {noun}.",
    "{Event}, {s} {be} {int}{adj} and {act}.",
    "There was a lot of {noun} in the room {ctx}.",
    '{S} kept saying "{say}" {event}.',
    "{Ctx}, {s} {be} {int}{adj}.",
    "{S} {be} there {event}, and {p} {act}.",
)

SUPPORTED_CLASSES = tuple(c for c in _PROTOTYPES if c in _LEXICON)


def write_text(label: str, rng: np.random.Generator) -> str:
    """One sentence that expresses `label` (a canonical class name)."""
    words = _LEXICON[label]
    subject, be, poss, pronoun = _SUBJECTS[rng.integers(len(_SUBJECTS))]

    def pick(options: Sequence[str]) -> str:
        return options[rng.integers(len(options))].replace("{poss}", poss)

    mid = subject if subject == "I" else subject[0].lower() + subject[1:]
    event, ctx = pick(words["event"]), pick(_CONTEXTS)
    template = pick(_TEMPLATES)
    return template.format(
        S=subject,
        s=mid,
        p=pronoun,
        be=be,
        int=pick(_INTENSIFIERS),
        adj=pick(words["adj"]),
        noun=pick(words["noun"]),
        act=pick(words["act"]),
        event=event,
        Event=event[0].upper() + event[1:],
        ctx=ctx,
        Ctx=ctx[0].upper() + ctx[1:],
        say=pick(words["say"]),
    )


def noisy_texts(
    labels: Sequence[str], classes: Sequence[str], text_noise: float, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """(text, the class it was written for) per label; with probability text_noise another class."""
    out = []
    for label in labels:
        source = label
        if rng.random() < text_noise:
            others = [c for c in classes if c != label]
            source = others[rng.integers(len(others))]
        out.append((write_text(source, rng), source))
    return out


# --- Faces -------------------------------------------------------------------------------------


def sample_expression(label: str, rng: np.random.Generator) -> np.ndarray:
    """The expression axes (see _AXES) for one face of `label`: prototype x intensity + jitter."""
    proto = np.zeros(len(_AXES))
    for name, value in _PROTOTYPES[label].items():
        proto[_AXIS[name]] = rng.uniform(*value) if isinstance(value, tuple) else value
    expression = rng.uniform(*_INTENSITY) * proto + rng.normal(0.0, _EXPRESSION_JITTER, len(_AXES))
    return np.where(_NONNEGATIVE, np.abs(expression), expression)


Point = tuple[float, float]


def _bezier(p0: Point, p1: Point, p2: Point, n: int = 9) -> list[Point]:
    steps = [i / (n - 1) for i in range(n)]
    return [
        (
            (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
            (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1],
        )
        for t in steps
    ]


def _shade(level: float, factor: float) -> int:
    return int(min(255.0, max(0.0, level * factor)))


@dataclass
class _Head:
    """Where the head sits on the canvas, and its tones; every feature is drawn relative to it."""

    draw: ImageDraw.ImageDraw
    cx: float
    cy: float
    a: float  # half width
    b: float  # half height
    ey: float  # eye line
    skin: float
    dark: float  # lid lines, pupils, the inside of the mouth
    hair: float
    unit: float  # one line width at this canvas size

    def width(self, k: float = 1.0) -> int:
        return max(1, round(k * self.unit))


def _draw_person(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> _Head:
    """Shoulders, neck, ears, head and hair; returns the head the features go on."""
    skin = rng.uniform(85, 215)
    dark = skin * rng.uniform(0.15, 0.35)
    a = size * 0.31 * rng.uniform(0.85, 1.1)
    b = a * rng.uniform(1.15, 1.4)
    cx = size / 2 + rng.uniform(-0.07, 0.07) * size
    cy = size / 2 + rng.uniform(-0.06, 0.06) * size - 0.03 * size
    ey = cy - 0.08 * b
    clothes = rng.uniform(10, 245)
    draw.ellipse(
        (cx - 1.5 * a, cy + b + 0.35 * a, cx + 1.5 * a, cy + b + 2.2 * a), fill=int(clothes)
    )
    neck = (cx - 0.42 * a, cy + 0.5 * b, cx + 0.42 * a, cy + b + 0.6 * a)
    draw.rectangle(neck, fill=_shade(skin, 0.85))
    for sx in (-1, 1):
        x = cx + sx * 0.97 * a
        draw.ellipse(
            (x - 0.13 * a, ey - 0.05 * b, x + 0.13 * a, ey + 0.28 * b), fill=_shade(skin, 0.9)
        )

    hair = rng.uniform(10, 200)
    style = rng.choice(4, p=(0.2, 0.4, 0.25, 0.15))  # bald, short, long, fringe
    if style == 2:
        draw.ellipse((cx - 1.25 * a, cy - 1.1 * b, cx + 1.25 * a, cy + 0.95 * b), fill=int(hair))
    # An egg, narrower at the jaw.
    jaw = rng.uniform(0.05, 0.22)
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    sin, cos = np.sin(theta), np.cos(theta)
    outline = zip(cx + a * cos * (1 - jaw * np.maximum(sin, 0)), cy + b * sin, strict=True)
    draw.polygon(list(outline), fill=int(skin))
    if style > 0:
        # The top of a slightly larger ellipse, cut off at the hairline; a fringe may hide the brows.
        low, high = {1: (-0.75, -0.55), 2: (-0.75, -0.5), 3: (-0.45, -0.28)}[int(style)]
        s0 = rng.uniform(low, high) / 1.05
        t = np.linspace(np.pi - math.asin(s0), 2 * np.pi + math.asin(s0), 24)
        cap = [(cx + 1.06 * a * math.cos(x), cy + 1.05 * b * math.sin(x)) for x in t]
        draw.polygon(cap, fill=int(hair))
    return _Head(draw, cx, cy, a, b, ey, skin, dark, hair, size / 128)


def _draw_eyes(h: _Head, e: dict[str, float], rng: np.random.Generator) -> float:
    """Eyes, brows, cheeks and maybe glasses; returns the sclera tone (teeth use it too)."""
    d, ey = h.draw, h.ey
    sep = h.a * rng.uniform(0.36, 0.46)
    ew = h.a * rng.uniform(0.15, 0.19)
    eh = ew * rng.uniform(0.38, 0.5)
    upper = eh * max(0.15, 1 + 0.7 * e["eye_open"])
    lower = eh * max(0.1, 0.85 - 0.45 * e["squint"] - 0.25 * e["cheek"])
    gap = h.b * rng.uniform(0.13, 0.18)
    brow_w = max(1, round(h.a * rng.uniform(0.045, 0.08)))
    brow_level = min(h.hair, h.dark) if rng.random() < 0.7 else h.dark
    sclera = _shade(h.skin, rng.uniform(1.15, 1.4))
    gaze = rng.uniform(-0.25, 0.25) * ew
    glasses = rng.random() < 0.15
    t = np.linspace(-1, 1, 13)
    for sx in (-1, 1):
        ex = h.cx + sx * sep
        top = [(ex + ew * x, ey - upper * (1 - x * x) ** 0.7) for x in t]
        bottom = [(ex + ew * x, ey + lower * (1 - x * x) ** 0.7) for x in t[::-1]]
        d.polygon(top + bottom, fill=sclera)
        # Iris and pupil, cut off by the lids.
        ri = eh * 0.85
        for radius, level in ((ri, h.skin * 0.4), (ri * 0.45, h.dark * 0.5)):
            y0, y1 = max(ey - radius, ey - upper * 0.97), min(ey + radius, ey + lower * 0.97)
            if y1 > y0:
                d.ellipse((ex + gaze - radius, y0, ex + gaze + radius, y1), fill=int(level))
        d.line(top, fill=int(h.dark), width=h.width(2), joint="curve")
        d.line(bottom, fill=_shade(h.skin, 0.6), width=h.width())
        if e["cheek"] > 0.2:  # raised cheeks bunch up under the eye
            y = ey + lower + 0.35 * ew
            arc = _bezier((ex - 0.9 * ew, y), (ex, y + 0.5 * ew), (ex + 0.9 * ew, y), 7)
            d.line(arc, fill=_shade(h.skin, 1 - 0.25 * min(e["cheek"], 1.2)), width=h.width())

        base = ey - gap - 0.55 * gap * e["brow_raise"]
        x_in = ex - sx * ew * (1.05 + 0.3 * e["brow_pull"])
        x_out = ex + sx * ew * 1.25
        y_in = base - 0.5 * gap * e["brow_inner"]
        y_out = base + 0.15 * gap * e["brow_inner"]
        mid = ((x_in + x_out) / 2, (y_in + y_out) / 2 - gap * (0.25 + 0.35 * e["brow_arch"]))
        brow = _bezier((x_in, y_in), mid, (x_out, y_out))
        d.line(brow, fill=int(brow_level), width=brow_w, joint="curve")
        if glasses:
            r = ew * 1.4
            rim = (ex - r, ey - 0.8 * r, ex + r, ey + 0.8 * r)
            d.ellipse(rim, outline=int(h.dark), width=h.width(1.5))
    if glasses:
        bridge = (h.cx - sep + 1.4 * ew, ey, h.cx + sep - 1.4 * ew, ey)
        d.line(bridge, fill=int(h.dark), width=h.width(1.5))
    return sclera


def _draw_nose(
    h: _Head, e: dict[str, float], rng: np.random.Generator
) -> tuple[float, float, float]:
    """The nose, wrinkled across the bridge for disgust; returns its (x, tip y, half width)."""
    d, b, ey = h.draw, h.b, h.ey
    wrinkle = min(e["nose_wrinkle"], 1.3)
    tip_y = ey + b * rng.uniform(0.3, 0.38) - 0.04 * b * wrinkle
    nx = h.cx + rng.uniform(-0.03, 0.03) * h.a
    nw = h.a * rng.uniform(0.11, 0.15)
    ridge = _bezier(
        (nx - 0.3 * nw, ey + 0.05 * b), (nx - 0.5 * nw, tip_y - 0.2 * b), (nx - 0.9 * nw, tip_y)
    )
    d.line(ridge, fill=_shade(h.skin, 0.8), width=h.width())
    for sx in (-1, 1):
        x = nx + sx * 0.55 * nw
        d.ellipse(
            (x - 0.25 * nw, tip_y - 0.12 * nw, x + 0.25 * nw, tip_y + 0.12 * nw),
            fill=_shade(h.skin, 0.45),
        )
    if wrinkle > 0.25:
        half = nw * (0.4 + 0.3 * wrinkle)
        for k in range(3):
            y = ey - 0.02 * b + k * 0.05 * b
            line = _bezier(
                (nx - half, y + 0.02 * b), (nx, y - 0.02 * b), (nx + half, y + 0.02 * b), 5
            )
            d.line(line, fill=_shade(h.skin, 1 - 0.35 * wrinkle), width=h.width())
    return nx, tip_y, nw


def _draw_mouth(
    h: _Head,
    e: dict[str, float],
    rng: np.random.Generator,
    nose: tuple[float, float, float],
    sclera: int,
    side: int,
) -> None:
    """A centre line bent by the lip corners, lips around it, open as far as the axes say."""
    d, b = h.draw, h.b
    nx, tip_y, nw = nose
    asym, lip_raise = min(e["asym"], 1.3), min(e["lip_raise"], 1.3)
    my = tip_y + b * rng.uniform(0.16, 0.22)
    mw = h.a * rng.uniform(0.27, 0.35) * max(0.45, 1 + 0.3 * e["mouth_width"])
    lift = mw * 0.35 * e["smile"]
    left, right = lift, lift
    if side < 0:
        left += mw * 0.5 * asym
    else:
        right += mw * 0.5 * asym
    openness = b * 0.16 * min(e["mouth_open"], 1.3)
    is_open = 0.4 * openness + b * 0.05 * lip_raise + 0.6 * openness > 1.5 * h.unit

    t = np.linspace(-1, 1, 17)
    bulge = (1 - t * t) ** (0.9 - 0.45 * min(e["mouth_round"], 1.0))
    xs = h.cx + mw * t + side * 0.1 * mw * asym * np.where(t * side > 0, t * t, 0)
    ys = my - np.where(t < 0, left, right) * np.abs(t) ** 1.6
    boxy = (1 - t * t) ** 0.35  # a raised upper lip lifts square, not round
    inner_up = ys - 0.4 * openness * bulge - b * 0.05 * lip_raise * boxy
    inner_down = ys + 0.6 * openness * bulge
    press = min(e["lip_press"], 1.2)
    lip_up = b * 0.035 * max(0.15, 1 - 0.8 * press)
    lip_down = b * 0.05 * max(0.15, 1 - 0.7 * press)
    rim = np.sqrt(1 - t * t)

    def band(upper: np.ndarray, lower: np.ndarray) -> list[tuple[float, float]]:
        return list(zip(xs, upper, strict=True)) + list(zip(xs[::-1], lower[::-1], strict=True))

    d.polygon(
        band(inner_up - lip_up * rim, inner_down + lip_down * rim),
        fill=_shade(h.skin, rng.uniform(0.7, 0.85)),
    )
    if is_open:
        d.polygon(band(inner_up, inner_down), fill=int(h.dark * 0.5))
        if e["smile"] > 0.3 or e["lip_raise"] > 0.3:
            d.polygon(band(inner_up, np.minimum(inner_up + 0.07 * b, inner_down)), fill=sclera)
    line = list(zip(xs, inner_up if is_open else ys, strict=True))
    d.line(line, fill=int(h.dark), width=h.width(1.5 + press), joint="curve")

    # Folds from the nose to the mouth corners, deep when the cheeks or upper lip are raised.
    fold = min(1.0, 0.5 * e["cheek"] + 0.7 * e["lip_raise"] + 0.2 * max(e["smile"], 0))
    if fold > 0.2:
        for sx, corner_lift in ((-1, left), (1, right)):
            p0 = (nx + sx * 0.9 * nw, tip_y - 0.02 * b)
            p2 = (h.cx + sx * (mw + 0.12 * h.a), my - corner_lift + 0.05 * b)
            p1 = (p2[0] + sx * 0.08 * h.a, (p0[1] + p2[1]) / 2)
            d.line(_bezier(p0, p1, p2, 7), fill=_shade(h.skin, 1 - 0.3 * fold), width=h.width())


def _photograph(
    img: Image.Image, h: _Head, background: float, image_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Pose, focus, downsampling, lighting from one side, contrast, brightness and sensor noise."""
    angle = rng.uniform(-15, 15)
    img = img.rotate(
        angle, resample=Image.Resampling.BILINEAR, center=(h.cx, h.cy), fillcolor=int(background)
    )
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2) * h.unit))
    if img.width % image_size == 0:
        img = img.reduce(img.width // image_size)  # a box filter: exact and fast
    else:
        img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)

    x = np.asarray(img, dtype=np.float32)
    grid = np.linspace(-1, 1, image_size, dtype=np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    slope = rng.uniform(0, 0.35)
    x = x * (1 + slope * (math.cos(phi) * grid[None, :] + math.sin(phi) * grid[:, None]))
    x = (x - x.mean()) * rng.uniform(0.65, 1.15) + x.mean() + rng.uniform(-20, 20)
    x = x + rng.normal(0, rng.uniform(1, 10), x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def draw_face(label: str, rng: np.random.Generator, image_size: int = 64) -> np.ndarray:
    """One greyscale face (uint8, image_size x image_size) showing `label`'s expression."""
    e = dict(zip(_AXES, sample_expression(label, rng).tolist(), strict=True))
    side = 1 if rng.random() < 0.5 else -1  # which lip corner contempt raises
    size = max(128, 2 * image_size)  # drawn supersampled, then downsampled with antialiasing
    background = rng.uniform(15, 240)
    img = Image.new("L", (size, size), int(background))
    head = _draw_person(ImageDraw.Draw(img), size, rng)
    sclera = _draw_eyes(head, e, rng)
    nose = _draw_nose(head, e, rng)
    _draw_mouth(head, e, rng, nose, sclera, side)
    return _photograph(img, head, background, image_size, rng)
