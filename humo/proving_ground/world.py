"""The proving ground's world: identities, scenes, actions, objects, the caption grammar and clip specs.

Everything a clip shows is a small set of discrete factors, so that the readers in `readers.py` can recover
them exactly and the metrics in `metrics.py` can compare them with what the inputs asked for:

- text (the caption): ``scene`` x ``action`` x ``object`` (6 x 5 x 6), worded by a grammar with synonyms and
  templates; `parse_caption` maps any wording back to the factors.
- identity (the reference image): six visual attributes (5 x 6 x 4 x 6 x 3 x 2 = 8640 identities); a fixed
  tenth of them (by a hash of the attribute tuple) is held out of every training split.
- audio: see `speech.py`; the mouth follows it.

Colours are chosen so that classes stay apart after blur and colour shifts: skin tones lie on one line of
warm colours and nothing else in the world comes near that line, hair colours differ from every background,
and objects differ from backgrounds and from each other. `tests/test_proving_ground_world.py` checks the margins.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# Palettes (RGB, 0..255)

SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "pale": (252, 224, 203),
    "light": (232, 184, 140),
    "tan": (200, 142, 95),
    "brown": (150, 95, 60),
    "dark": (100, 62, 40),
}
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "yellow": (240, 205, 40),
    "red": (190, 30, 40),
    "blue": (40, 90, 210),
    "purple": (120, 50, 170),
    "pink": (240, 120, 200),
    "grey": (135, 140, 180),
}
SHIRT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "green": (50, 160, 70),
    "blue": (50, 80, 200),
    "yellow": (235, 205, 50),
    "purple": (130, 60, 180),
    "teal": (30, 160, 160),
}
HAIR_STYLES = ("short", "long", "bun", "pigtails")
#: face half-width / face half-height (the head is an ellipse; U = half-height)
FACE_SHAPES: dict[str, float] = {"long": 0.68, "oval": 0.85, "round": 1.04}
GLASSES = ("none", "sunglasses")

MOUTH_COLOUR = (60, 5, 25)
GLASSES_COLOUR = (20, 20, 30)
EYE_WHITE = (245, 245, 245)
PUPIL_COLOUR = (30, 30, 40)

#: scene -> (colour above the horizon, colour below, pattern colour); see render.draw_background
SCENES: dict[str, dict] = {
    "beach": {"top": (140, 200, 240), "bottom": (40, 150, 170), "pattern": (200, 235, 245), "horizon": 0.62},
    "forest": {"top": (35, 90, 45), "bottom": (35, 90, 45), "pattern": (20, 55, 25), "horizon": 1.0},
    "city": {"top": (55, 62, 95), "bottom": (95, 95, 105), "pattern": (150, 215, 230), "horizon": 0.7},
    "night": {"top": (20, 25, 75), "bottom": (15, 15, 40), "pattern": (200, 210, 255), "horizon": 0.75},
    "snow": {"top": (205, 200, 245), "bottom": (215, 232, 255), "pattern": (225, 235, 255), "horizon": 0.6},
    "park": {"top": (150, 220, 180), "bottom": (80, 160, 60), "pattern": (60, 130, 45), "horizon": 0.66},
}
ACTIONS = ("still", "waving", "nodding", "shaking", "jumping")
MULTI_ACTIONS = ("still", "nodding", "shaking", "jumping")
OBJECTS: dict[str, tuple[int, int, int] | None] = {
    "none": None,
    "ball": (220, 40, 40),
    "book": (40, 70, 210),
    "cup": (240, 210, 40),
    "flower": (220, 50, 180),
    "umbrella": (120, 40, 180),
}

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "skin": tuple(SKIN_TONES),
    "hair_colour": tuple(HAIR_COLOURS),
    "hair_style": HAIR_STYLES,
    "shirt": tuple(SHIRT_COLOURS),
    "face_shape": tuple(FACE_SHAPES),
    "glasses": GLASSES,
}
#: Fraction of identities held out of training (chosen by hash, so the set never changes).
HELDOUT_MODULUS = 10


@dataclass(frozen=True)
class Identity:
    """One character's looks. Every field is a key of the matching palette in this module."""

    skin: str
    hair_colour: str
    hair_style: str
    shirt: str
    face_shape: str
    glasses: str

    def key(self) -> str:
        return "|".join(f"{k}={getattr(self, k)}" for k in ATTRIBUTES)

    @property
    def heldout(self) -> bool:
        return is_heldout(self)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def is_heldout(identity: Identity) -> bool:
    """True for the fixed tenth of identities that no training split may contain (hash of the attribute tuple)."""
    digest = hashlib.sha256(identity.key().encode()).digest()
    return int.from_bytes(digest[:8], "little") % HELDOUT_MODULUS == 0


def all_identities() -> list[Identity]:
    """Every identity, in a fixed order (8640)."""
    grids = np.meshgrid(*[np.arange(len(v)) for v in ATTRIBUTES.values()], indexing="ij")
    idx = np.stack([g.ravel() for g in grids], axis=1)
    names = list(ATTRIBUTES)
    return [Identity(**{n: ATTRIBUTES[n][i] for n, i in zip(names, row)}) for row in idx]


def sample_identity(rng: np.random.Generator, heldout: bool) -> Identity:
    """Draw a uniformly random identity from the held-out set (`heldout`) or from the training set."""
    while True:
        ident = Identity(**{n: str(rng.choice(v)) for n, v in ATTRIBUTES.items()})
        if is_heldout(ident) == heldout:
            return ident


# ---------------------------------------------------------------------------------------------------------------
# Caption grammar. Each value has wordings; parsing uses keywords (word stems) that never overlap between values.

SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "beach": ("on the beach", "at the seaside", "by the sea"),
    "forest": ("in the forest", "in the woods", "among the trees"),
    "city": ("in the city", "among tall buildings", "on a city street"),
    "night": ("under the night sky", "on a starry night", "at night under the stars"),
    "snow": ("in the snow", "in a snowy field", "on a snowy day"),
    "park": ("in the park", "on a green meadow", "on the lawn"),
}
SCENE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "seaside", "sea", "shore"),
    "forest": ("forest", "woods", "trees", "tree"),
    "city": ("city", "buildings", "street", "town"),
    "night": ("night", "stars", "starry"),
    "snow": ("snow", "snowy", "winter"),
    "park": ("park", "meadow", "lawn", "grass"),
}
# (third person singular, -ing form) wordings per action
ACTION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "still": (
        ("stands still", "standing still"),
        ("keeps still", "keeping still"),
        ("stays motionless", "staying motionless"),
    ),
    "waving": (("waves", "waving"), ("waves a hand", "waving a hand"), ("waves hello", "waving hello")),
    "nodding": (("nods", "nodding"), ("nods along", "nodding along")),
    "shaking": (("shakes their head", "shaking their head"), ("shakes the head", "shaking the head")),
    "jumping": (("jumps", "jumping"), ("hops up and down", "hopping up and down"), ("bounces", "bouncing")),
}
ACTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "still": ("still", "motionless", "stands", "standing"),
    "waving": ("wave", "waves", "waving", "waved"),
    "nodding": ("nod", "nods", "nodding", "nodded"),
    "shaking": ("shake", "shakes", "shaking", "shook"),
    "jumping": ("jump", "jumps", "jumping", "hop", "hops", "hopping", "bounce", "bounces", "bouncing"),
}
OBJECT_PHRASES: dict[str, tuple[str, ...]] = {
    "ball": ("a red ball", "a ball"),
    "book": ("a blue book", "a book"),
    "cup": ("a yellow cup", "a cup", "a mug"),
    "flower": ("a pink flower", "a flower"),
    "umbrella": ("a purple umbrella", "an umbrella"),
}
OBJECT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "ball": ("ball",),
    "book": ("book",),
    "cup": ("cup", "mug"),
    "flower": ("flower",),
    "umbrella": ("umbrella",),
}
HOLD_PHRASES = (" while holding {}", " holding {}", " with {} in hand")
EMPTY_HAND_PHRASES = ("", "", " with empty hands")
SUBJECTS = ("a person", "someone", "a character", "a cartoon person")
TEMPLATES = (
    "{Subj} {vbz}{obj} {scene} while talking.",
    "{Scene}, {subj} is talking and {vbg}{obj}.",
    "{Subj} talks {scene}, {vbg}{obj}.",
    "{Scene}: {subj} {vbz}{obj} and speaks.",
)
POSITIONS = {2: ("left", "right"), 3: ("left", "middle", "right")}
#: head size (`CharacterSpec.scale`, +-5%) of characters side by side, by their number
MULTI_SCALE = {1: 1.0, 2: 0.68, 3: 0.5}
MULTI_TEMPLATES = ("{Count} people talk {scene}.", "The person {where} {vbz}{obj}.")
WHERE = {"middle": "in the middle", "side": "on the {pos}"}
COUNT_WORDS = {2: "Two", 3: "Three"}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_caption(rng: np.random.Generator, scene: str, action: str, obj: str) -> str:
    """A random wording of (scene, action, object) for one character; `parse_caption` recovers the factors."""
    vbz, vbg = ACTION_PHRASES[action][rng.integers(len(ACTION_PHRASES[action]))]
    if obj == "none":
        obj_phrase = EMPTY_HAND_PHRASES[rng.integers(len(EMPTY_HAND_PHRASES))]
    else:
        np_ = OBJECT_PHRASES[obj][rng.integers(len(OBJECT_PHRASES[obj]))]
        obj_phrase = HOLD_PHRASES[rng.integers(len(HOLD_PHRASES))].format(np_)
    subj = SUBJECTS[rng.integers(len(SUBJECTS))]
    scene_phrase = SCENE_PHRASES[scene][rng.integers(len(SCENE_PHRASES[scene]))]
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    return template.format(
        Subj=_cap(subj), subj=subj, vbz=vbz, vbg=vbg, obj=obj_phrase, Scene=_cap(scene_phrase), scene=scene_phrase
    )


def make_multi_caption(rng: np.random.Generator, scene: str, people: list[tuple[str, str]]) -> str:
    """Caption for 2-3 characters, left to right: `people` is [(action, object)] per character."""
    n = len(people)
    scene_phrase = SCENE_PHRASES[scene][rng.integers(len(SCENE_PHRASES[scene]))]
    opening, person = MULTI_TEMPLATES
    parts = [opening.format(Count=COUNT_WORDS[n], scene=scene_phrase)]
    for pos, (action, obj) in zip(POSITIONS[n], people):
        vbz, _ = ACTION_PHRASES[action][rng.integers(len(ACTION_PHRASES[action]))]
        if obj == "none":
            obj_phrase = ""
        else:
            obj_phrase = HOLD_PHRASES[rng.integers(len(HOLD_PHRASES))].format(OBJECT_PHRASES[obj][0])
        where = WHERE["middle"] if pos == "middle" else WHERE["side"].format(pos=pos)
        parts.append(person.format(where=where, vbz=vbz, obj=obj_phrase))
    return " ".join(parts)


def vocabulary() -> list[str]:
    """Every word the caption grammar can write or `parse_caption` reads (lowercase, sorted, unique).

    The toy text encoder's tokenizer is built from it, so no caption of this world tokenizes to <unk>."""
    texts: list[str] = [*SUBJECTS, *TEMPLATES, *MULTI_TEMPLATES, *WHERE.values()]
    texts += [*HOLD_PHRASES, *EMPTY_HAND_PHRASES, *COUNT_WORDS.values()]
    for table in (SCENE_PHRASES, SCENE_KEYWORDS, OBJECT_PHRASES, OBJECT_KEYWORDS, ACTION_KEYWORDS):
        texts += [w for words in table.values() for w in words]
    texts += [w for pairs in ACTION_PHRASES.values() for pair in pairs for w in pair]
    texts += [w for pos in POSITIONS.values() for w in pos]
    texts += [*SCENES, *ACTIONS, *OBJECTS]
    # Template fields ({Subj}, {vbz}, ...) are placeholders, not words.
    words = {w for t in texts for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", t).lower())}
    return sorted(words)


def _find(text: str, keywords: dict[str, tuple[str, ...]]) -> list[tuple[int, str]]:
    """(position, value) of every keyword of every value found in `text` as a whole word."""
    hits = []
    for value, words in keywords.items():
        for w in words:
            for m in re.finditer(rf"\b{re.escape(w)}\b", text):
                hits.append((m.start(), value))
    return sorted(hits)


def _action_of(text: str) -> str | None:
    hits = [v for _, v in _find(text, ACTION_KEYWORDS)]
    moving = [v for v in hits if v != "still"]
    # "still waving" is waving: a motion word beats the still words
    return moving[0] if moving else (hits[0] if hits else None)


def _object_of(text: str) -> str:
    hits = _find(text, OBJECT_KEYWORDS)
    return hits[0][1] if hits else "none"


def parse_caption(text: str) -> dict:
    """Factors named by a caption: ``{"scene", "action", "object"}`` (None when a factor is not mentioned;
    the object is "none" when no object is named). For multi-person captions ("The person on the left ...")
    also ``"people": [{"position", "action", "object"}]`` left to right, and action/object of the first person.
    """
    t = text.lower()
    scenes = _find(t, SCENE_KEYWORDS)
    out: dict = {"scene": scenes[0][1] if scenes else None}
    segments = re.split(r"\bthe person (?:on the|in the) (left|middle|right)\b", t)
    if len(segments) > 1:
        people = []
        for pos, seg in zip(segments[1::2], segments[2::2]):
            people.append({"position": pos, "action": _action_of(seg), "object": _object_of(seg)})
        out["people"] = people
        out["action"], out["object"] = people[0]["action"], people[0]["object"]
    else:
        out["action"] = _action_of(t)
        out["object"] = _object_of(t)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Clip specifications: everything the renderer and the speech synthesiser need, drawn from one seeded RNG.


@dataclass
class CharacterSpec:
    """One character in a clip. Positions are fractions of the frame (x of width, y of height); `scale`
    multiplies the base head size U = 0.19 * height."""

    identity: Identity
    action: str
    object: str
    x: float
    y: float
    scale: float
    phase: float  # motion phase in [0, 1)
    rate: float  # motion frequency multiplier around the action's base frequency
    pitch: float  # speaking voice f0 in Hz
    speaking: list[tuple[float, float]] = field(default_factory=list)  # (start s, end s) of speaking turns


@dataclass
class ClipSpec:
    scene: str
    characters: list[CharacterSpec]
    caption: str
    num_frames: int
    fps: float
    width: int
    height: int
    pattern_seed: int  # background pattern variation

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def frame_lengths(lo: int, hi: int) -> list[int]:
    """Allowed clip lengths in [lo, hi]: 4k+1 (the Wan VAE's temporal stride)."""
    return [n for n in range(lo, hi + 1) if n % 4 == 1]


def sample_clip_spec(
    rng: np.random.Generator,
    *,
    width: int = 64,
    height: int = 64,
    frames: tuple[int, int] = (33, 97),
    fps: float = 25.0,
    heldout: bool = False,
    num_characters: int = 1,
) -> ClipSpec:
    """Draw one clip: scene, per-character identity/action/object/placement/voice and a caption."""
    lengths = frame_lengths(*frames)
    num_frames = int(rng.choice(lengths))
    duration = num_frames / fps
    scene = str(rng.choice(list(SCENES)))
    chars = []
    if num_characters == 1:
        xs, ys, scales = [0.5 + rng.uniform(-0.04, 0.04)], [0.44 + rng.uniform(-0.02, 0.02)], [rng.uniform(0.92, 1.06)]
    else:
        slots = np.linspace(0.5 / num_characters, 1 - 0.5 / num_characters, num_characters)
        xs = [s + rng.uniform(-0.02, 0.02) for s in slots]
        base = MULTI_SCALE.get(num_characters, MULTI_SCALE[3])
        ys = [0.5 + rng.uniform(-0.02, 0.02) for _ in slots]
        scales = [base * rng.uniform(0.95, 1.05) for _ in slots]
    # speaking turns: one speaker at a time; a single character speaks over the whole clip
    turns = _speaking_turns(rng, duration, num_characters)
    for i in range(num_characters):
        if num_characters == 1:
            action, obj = str(rng.choice(ACTIONS)), str(rng.choice(list(OBJECTS)))
        else:
            # side by side there is no room for a raised hand or a held object between the characters
            action, obj = str(rng.choice(MULTI_ACTIONS)), "none"
        chars.append(
            CharacterSpec(
                identity=sample_identity(rng, heldout),
                action=action,
                object=obj,
                x=float(xs[i]),
                y=float(ys[i]),
                scale=float(scales[i]),
                phase=float(rng.uniform()),
                rate=float(rng.uniform(0.85, 1.15)),
                pitch=float(rng.uniform(100, 240)),
                speaking=turns[i],
            )
        )
    if num_characters == 1:
        caption = make_caption(rng, scene, chars[0].action, chars[0].object)
    else:
        caption = make_multi_caption(rng, scene, [(c.action, c.object) for c in chars])
    return ClipSpec(
        scene=scene,
        characters=chars,
        caption=caption,
        num_frames=num_frames,
        fps=fps,
        width=width,
        height=height,
        pattern_seed=int(rng.integers(1 << 30)),
    )


def _speaking_turns(rng: np.random.Generator, duration: float, n: int) -> list[list[tuple[float, float]]]:
    if n == 1:
        return [[(0.0, duration)]]
    k = int(rng.integers(2, 5))  # number of turns
    cuts = np.sort(rng.uniform(0.2, 0.8, size=k - 1)) * duration
    bounds = [0.0, *cuts.tolist(), duration]
    first = int(rng.integers(n))
    turns: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    speaker = first
    for a, b in zip(bounds[:-1], bounds[1:]):
        turns[speaker].append((a, b))
        speaker = (speaker + 1 + int(rng.integers(n - 1))) % n if n > 2 else 1 - speaker
    return turns
