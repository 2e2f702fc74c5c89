"""The proving ground's world: palettes keep classes apart, captions parse back, held-out identities, speech,
rendering (determinism, masks, mouth follows audio)."""

import itertools

import numpy as np
import pytest

from humo.proving_ground import readers, render, speech, world


def _cone_distance(c, lo=0.8, hi=1.2):
    c = np.asarray(c, float)
    best = np.inf
    for s in world.SKIN_TONES.values():
        s = np.asarray(s, float)
        t = np.clip(c @ s / (s @ s), lo, hi)
        best = min(best, np.linalg.norm(c - t * s))
    return best


def _min_pairwise(palette):
    vals = [np.asarray(v, float) for v in palette.values()]
    return min(np.linalg.norm(a - b) for a, b in itertools.combinations(vals, 2))


def test_palettes_keep_classes_apart():
    # nothing drawn outside a face may look like skin (the face finder relies on it)
    outside = list(world.HAIR_COLOURS.values()) + list(world.SHIRT_COLOURS.values())
    outside += [c for c in world.OBJECTS.values() if c is not None]
    outside += [s[k] for s in world.SCENES.values() for k in ("top", "bottom", "pattern")]
    outside += [render._STEM, render._FLOWER_HEART, render._STICK]
    assert min(_cone_distance(c) for c in outside) > 55
    # classes of one attribute are far apart; hair is far from every background
    for pal in (world.SKIN_TONES, world.HAIR_COLOURS, world.SHIRT_COLOURS):
        assert _min_pairwise(pal) > 60
    assert _min_pairwise({k: v for k, v in world.OBJECTS.items() if v}) > 80
    bgs = [s[k] for s in world.SCENES.values() for k in ("top", "bottom")]
    assert min(np.linalg.norm(np.subtract(h, b)) for h in world.HAIR_COLOURS.values() for b in bgs) > 60


def test_every_caption_wording_parses_back():
    rng = np.random.default_rng(0)
    for scene, action, obj in itertools.product(world.SCENES, world.ACTIONS, world.OBJECTS):
        for _ in range(3):
            cap = world.make_caption(rng, scene, action, obj)
            assert world.parse_caption(cap) == {"scene": scene, "action": action, "object": obj}, cap
    people = [("jumping", "none"), ("shaking", "none"), ("still", "none")]
    cap = world.make_multi_caption(rng, "city", people)
    p = world.parse_caption(cap)
    assert p["scene"] == "city"
    assert [(x["position"], x["action"]) for x in p["people"]] == [
        ("left", "jumping"),
        ("middle", "shaking"),
        ("right", "still"),
    ]


def test_parse_caption_free_text():
    p = world.parse_caption("A woman is still waving in the woods, holding a mug.")
    assert p == {"scene": "forest", "action": "waving", "object": "cup"}
    assert world.parse_caption("a man talks") == {"scene": None, "action": None, "object": "none"}


def test_heldout_identities_are_a_fixed_tenth():
    ids = world.all_identities()
    assert len(ids) == len(set(ids)) == np.prod([len(v) for v in world.ATTRIBUTES.values()])
    held = [i for i in ids if i.heldout]
    assert 0.07 < len(held) / len(ids) < 0.13
    rng = np.random.default_rng(1)
    assert all(world.sample_identity(rng, heldout=True).heldout for _ in range(30))
    assert not any(world.sample_identity(rng, heldout=False).heldout for _ in range(30))


def test_speech_rms_follows_envelope_and_silence_is_closed():
    rng = np.random.default_rng(2)
    T, fps = 73, 25.0
    tr = speech.speech_track(rng, [(0.0, T / fps)], T / fps, T, fps, pitch=150.0)
    assert tr.wave.dtype == np.float32 and tr.wave.shape == (round(T / fps * speech.SAMPLE_RATE),)
    assert np.abs(tr.wave).max() <= 1.0
    env = readers.audio_envelope(tr.wave, speech.SAMPLE_RATE, fps, T)
    assert np.corrcoef(env, tr.envelope)[0, 1] > 0.97
    assert (tr.envelope < 0.02).sum() >= 3  # pauses: closed-mouth frames to sync on
    assert set(np.unique(tr.roundness[tr.envelope > 0.3].round())) <= {0.0, 1.0}
    # vowels differ in spectrum: the formant peaks move the spectral centroid
    cents = {}
    for v in ("i", "u"):
        syl = [speech.Syllable(0.1, 0.5, v, 1.0)]
        w = speech.synthesize(np.random.default_rng(0), syl, 0.7, 17, fps, 150.0).wave
        spec = np.abs(np.fft.rfft(w))
        f = np.fft.rfftfreq(len(w), 1 / speech.SAMPLE_RATE)
        cents[v] = (spec * f).sum() / spec.sum()
    assert cents["i"] > cents["u"] + 300


def test_render_is_deterministic_and_masks_cover_the_face():
    spec = world.sample_clip_spec(np.random.default_rng(5), frames=(17, 17))
    ch = spec.characters[0]
    tr = speech.speech_track(np.random.default_rng(6), ch.speaking, spec.duration, 17, spec.fps, ch.pitch)
    a = render.render_clip(spec, [tr.envelope], [tr.roundness])
    b = render.render_clip(spec, [tr.envelope], [tr.roundness])
    assert a.frames.shape == (17, 64, 64, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    m = a.face_masks[0]
    assert m.shape == (17, 64, 64)
    # the face is 25-50% of the frame height and its pixels are skin-toned (or face features)
    rows = m.any(-1).sum(-1)
    assert (rows > 0.25 * 64).all() and (rows < 0.5 * 64).all()
    skin = world.SKIN_TONES[ch.identity.skin]
    frac = (np.linalg.norm(a.frames[m].astype(float) - skin, axis=-1) < 20).mean()
    assert frac > 0.7
    kp = a.keypoints[0]
    assert kp.shape == (17, len(render.KEYPOINTS), 3)
    head = kp[:, render.KEYPOINTS.index("head"), :2]
    assert np.all(m[np.arange(17), head[:, 1].astype(int), head[:, 0].astype(int)])


def test_mouth_opens_with_the_envelope():
    ident = world.Identity("tan", "blue", "short", "red", "oval", "none")
    area = []
    for o in (0.0, 0.5, 1.0):
        img, _ = render.render_still(ident, opening=o)
        area.append((np.linalg.norm(img.astype(float) - world.MOUTH_COLOUR, axis=-1) < 40).sum())
    assert area[0] < area[1] < area[2]
    assert area[2] > 40  # a fully open mouth is tens of pixels at 64 x 64: it survives an 8x VAE
    wide, _ = render.render_still(ident, opening=1.0, roundness=0.0)
    rnd, _ = render.render_still(ident, opening=1.0, roundness=1.0)

    def extent(img):
        ys, xs = np.nonzero(np.linalg.norm(img.astype(float) - world.MOUTH_COLOUR, axis=-1) < 40)
        return np.ptp(xs) + 1, np.ptp(ys) + 1

    (ww, wh), (rw, rh) = extent(wide), extent(rnd)
    assert ww > wh and rh > rw


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (128, 128)])
def test_render_other_sizes(size):
    w, h = size
    spec = world.sample_clip_spec(np.random.default_rng(7), width=w, height=h, frames=(9, 9), num_characters=2)
    openings = [np.zeros(9, np.float32)] * 2
    clip = render.render_clip(spec, openings, openings)
    assert clip.frames.shape == (9, h, w, 3)
    assert clip.face_masks.shape == (2, 9, h, w)
    assert clip.face_masks.any((1, 2, 3)).all()


def _two_characters(overlap: bool):
    """A 2-person spec of 9 frames; with `overlap` the right character stands over the left one's right half."""
    spec = world.sample_clip_spec(np.random.default_rng(8), frames=(9, 9), num_characters=2)
    if overlap:
        spec.characters[1].x = spec.characters[0].x + 0.2
    return spec


def test_person_masks_cover_each_whole_character_and_the_top_one_wins():
    openings = [np.full(9, 0.5, np.float32)] * 2
    spec = _two_characters(overlap=False)
    clip = render.render_clip(spec, openings, openings)
    pm = clip.person_masks
    assert pm.shape == (2, 9, 64, 64) and pm.dtype == bool
    assert (pm.sum(0) <= 1).all()  # every pixel belongs to one character at most
    assert not (clip.face_masks & ~pm).any()  # the face is part of the person
    # the whole drawing, not just the face: several times the face's area, and what differs from the background
    # (up to the anti-aliased outline: pixels less than half covered change colour but are not the character's)
    assert (pm.sum((1, 2, 3)) > 3 * clip.face_masks.sum((1, 2, 3))).all()
    bg = render.draw_background(spec.scene, 64, 64, spec.pattern_seed)
    drawn = np.abs(clip.frames.astype(np.float32) - bg).max(-1) > 1
    union = pm.any(0)
    assert not (drawn & ~readers._dilate(union, 1)).any() and not (union & ~drawn).any()

    # overlapping: drawn alone, each character's mask is where it is drawn; together, the later (right) one
    # keeps all of its own, the earlier one loses what the later one covers
    spec = _two_characters(overlap=True)
    both = render.render_clip(spec, openings, openings).person_masks
    alone = []
    for k in range(2):
        s = _two_characters(overlap=True)
        s.characters = [s.characters[k]]
        alone.append(render.render_clip(s, openings[:1], openings[:1]).person_masks[0])
    shared = alone[0] & alone[1]
    assert shared.sum() > 100  # they do overlap
    assert np.array_equal(both[1], alone[1])
    assert not (both[0] & alone[1]).any() and np.array_equal(both[0] | shared, alone[0])
