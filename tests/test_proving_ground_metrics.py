"""The metrics, validated both ways: near-perfect on ground-truth clips (also after blur/downsampling/noise),
near chance on mismatched inputs (another prompt, another identity's reference, another clip's audio), and a
shifted audio track moves the best sync offset by the shift."""

import numpy as np
import pytest

from humo.errors import HumoError
from humo.proving_ground import metrics, readers, render, speech, world

N = 6


def _clip(seed):
    rng = np.random.default_rng(seed)
    spec = world.sample_clip_spec(rng, frames=(41, 41))
    ch = spec.characters[0]
    tr = speech.speech_track(rng, ch.speaking, spec.duration, spec.num_frames, spec.fps, ch.pitch)
    clip = render.render_clip(spec, [tr.envelope], [tr.roundness])
    ref, _, _ = render.render_reference(ch.identity, rng)
    return {"spec": spec, "audio": tr.wave, "env": tr.envelope, "frames": clip.frames, "mask": clip.face_masks[0],
            "ref": ref}  # fmt: skip


@pytest.fixture(scope="module")
def clips():
    return [_clip(900 + i) for i in range(N)]


def _eval(c, frames=None, prompt=None, ref=None, audio=None):
    return metrics.evaluate_clip(
        c["frames"] if frames is None else frames,
        25.0,
        c["spec"].caption if prompt is None else prompt,
        [c["ref"] if ref is None else ref],
        (c["audio"] if audio is None else audio, speech.SAMPLE_RATE),
    )


@pytest.fixture(scope="module")
def clean(clips):
    return [_eval(c) for c in clips]


def test_ground_truth_clips_score_near_perfect(clean):
    m = metrics.summarize(clean)
    assert m["text_mean"] == 1.0
    assert m["subject_acc"] == 1.0 and m["subject_sim"] > 0.95
    assert m["sync_offset"] == 0.0  # mean |offset|
    assert m["sync_d"] < 0.05 and m["sync_c"] > 0.6
    assert m["face_found"] == 1.0


@pytest.mark.parametrize(
    "kind", [dict(blur=1.0, noise=3.0, down=1, shift=6.0), dict(blur=0.0, noise=3.0, down=2, shift=6.0)]
)
def test_metrics_survive_blur_downsampling_and_colour_shifts(clips, kind):
    rows = []
    for i, c in enumerate(clips):
        rng = np.random.default_rng(i)
        frames = metrics.degrade(c["frames"], rng, **kind)
        ref = metrics.degrade(c["ref"][None], rng, **kind)[0]
        rows.append(_eval(c, frames=frames, ref=ref))
    m = metrics.summarize(rows)
    assert m["text_mean"] >= 0.9
    assert m["subject_acc"] >= 0.9
    assert m["sync_offset"] <= 0.5 and m["sync_c"] > 0.5


def _different_prompt(spec, k):
    """A caption whose scene, action and object all differ from the clip's."""
    ch = spec.characters[0]
    pick = lambda values, not_this: [v for v in values if v != not_this][k % (len(values) - 1)]
    rng = np.random.default_rng(k)
    return world.make_caption(rng, pick(world.SCENES, spec.scene), pick(world.ACTIONS, ch.action),
                              pick(world.OBJECTS, ch.object))  # fmt: skip


def test_text_following_fails_on_another_prompt(clips, clean):
    for k, c in enumerate(clips):
        tf = metrics.text_following(c["frames"], _different_prompt(c["spec"], k))
        assert tf["text_mean"] == 0.0, tf
    # against random other clips' prompts the score sits near chance (1/6, 1/5, 1/6), far below the truth
    shuffled = [metrics.text_following(c["frames"], clips[(i + 1) % N]["spec"].caption) for i, c in enumerate(clips)]
    assert np.mean([r["text_mean"] for r in shuffled]) < 0.5


def test_subject_consistency_fails_on_another_identity(clips, clean):
    rows = []
    for i, c in enumerate(clips):
        other = world.sample_identity(np.random.default_rng(50 + i), heldout=False)
        ref, _, _ = render.render_reference(other, np.random.default_rng(60 + i))
        rows.append(metrics.subject_consistency(c["frames"], [ref]))
    acc = np.mean([r["subject_acc"] for r in rows])
    sim = np.mean([r["subject_sim"] for r in rows])
    assert acc < 0.5 and sim < 0.6
    assert np.mean([r["subject_sim"] for r in clean]) - sim > 0.4


def test_sync_drops_on_another_clips_audio(clips, clean):
    rows = [metrics.av_sync(c["frames"], 25.0, clips[(i + 1) % N]["audio"], speech.SAMPLE_RATE)
            for i, c in enumerate(clips)]  # fmt: skip
    true_c = np.mean([r["sync_c"] for r in clean])
    assert np.mean([r["sync_c"] for r in rows]) < 0.65 * true_c
    assert np.mean([r["sync_d"] for r in rows]) > 0.3
    assert np.mean([r["sync_corr0"] for r in rows]) < 0.5  # vs ~0.99 in sync


@pytest.mark.parametrize("shift", [-6, 4])
def test_shifted_audio_moves_the_best_offset(clips, shift):
    for c in clips[:3]:
        s = int(round(abs(shift) * speech.SAMPLE_RATE / 25.0))
        a = c["audio"]
        # positive shift: the audio starts later (lags the video)
        shifted = (
            np.concatenate([np.zeros(s, np.float32), a])[: len(a)]
            if shift > 0
            else np.concatenate([a[s:], np.zeros(s, np.float32)])
        )
        r = metrics.av_sync(c["frames"], 25.0, shifted, speech.SAMPLE_RATE)
        assert abs(r["sync_offset"] - shift) <= 1, r["sync_offset"]


def test_sync_scores_on_signals():
    rng = np.random.default_rng(0)
    env = np.convolve(rng.uniform(size=80), np.ones(4) / 4, mode="same")
    r = metrics.sync_scores(env, env)
    assert r["sync_offset"] == 0 and r["sync_d"] < 1e-6 and r["sync_c"] > 0.5
    r = metrics.sync_scores(env[3:], env[:-3])  # mouth[t] = audio[t + 3]: the audio lags by 3 frames
    assert r["sync_offset"] == 3
    r = metrics.sync_scores(np.full(80, np.nan), env)
    assert r["sync_c"] is None


def test_copy_paste_reads_a_pasted_reference_and_not_a_faithful_clip(clips):
    """A video that pastes its reference (degraded as a VAE would) takes the reference's scene and face placement; the
    true clip, drawn apart from its reference, takes neither: no closer to its own reference than to another's."""
    faithful, pasted, scene_true, scene_pasted = [], [], [], []
    rng = np.random.default_rng(3)
    for i, c in enumerate(clips):
        other = clips[(i + 1) % N]["ref"]
        paste = metrics.degrade(np.repeat(c["ref"][None], 9, 0), rng, blur=0.8, noise=3.0, down=2, shift=6.0)
        for video, out, scenes in ((c["frames"], faithful, scene_true), (paste, pasted, scene_pasted)):
            own = metrics.copy_paste(video, c["ref"], c["spec"].caption)
            base = metrics.copy_paste(video, other, c["spec"].caption)
            out.append((own["placement_distance"], base["placement_distance"]))
            if own["copy_scene"] is not None:
                scenes.append(own["copy_scene"])
    assert scene_true and len(scene_true) == len(scene_pasted)
    assert max(scene_true) < 0.2 and min(scene_pasted) > 0.8
    own_t, base_t = np.mean(faithful, 0)
    own_p, base_p = np.mean(pasted, 0)
    assert own_p < 0.3 * base_p and own_p < 0.3 * own_t
    assert own_t > 0.5 * base_t
    # the prompt asks for the reference's own scene: copying and following cannot be told apart
    c = clips[0]
    asked = world.parse_caption(c["spec"].caption)["scene"]
    same = render.render_still(c["spec"].characters[0].identity, scene=asked)[0]
    assert metrics.copy_paste(c["frames"], same, c["spec"].caption)["copy_scene"] is None
    assert metrics.copy_paste(c["frames"], c["ref"], None)["copy_scene"] is None
    blank = np.full((9, 64, 64, 3), 120, np.uint8)
    assert metrics.copy_paste(blank, c["ref"], c["spec"].caption)["placement_distance"] is None


def test_face_iou(clips):
    c = clips[0]
    gt = c["mask"]
    assert metrics.face_iou(gt, gt) == 1.0
    assert metrics.face_iou(gt, np.zeros_like(gt)) == 0.0
    assert metrics.face_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    pred = readers.face_mask(c["frames"])
    assert metrics.face_iou(pred, gt) > 0.8
    assert metrics.face_iou(np.roll(gt, 12, axis=2), gt) < 0.3
    assert metrics.face_iou(gt.astype(np.float32) * 0.9, gt) == 1.0
    with pytest.raises(HumoError, match="shape"):
        metrics.face_iou(gt[0], gt)


def test_missing_inputs_give_none(clips):
    r = metrics.evaluate_clip(clips[0]["frames"], 25.0, None, [], None)
    assert r["text_mean"] is None and r["subject_acc"] is None and r["sync_c"] is None
    # a frame without any character
    blank = np.full((9, 64, 64, 3), 120, np.uint8)
    r = metrics.evaluate_clip(blank, 25.0, clips[0]["spec"].caption, [clips[0]["ref"]], None)
    assert r["face_found"] == 0.0 and r["subject_acc"] is None


def test_a_face_track_given_is_the_one_read(clips, clean):
    """evaluate_clip takes the caller's face track (the held-out evaluation finds it once per clip): the clip's own
    track reads exactly what finding it does; another clip's track, at another place, reads the mouth elsewhere."""
    c, other = clips[0], clips[1]
    face = readers.find_faces(c["frames"])[0]
    given = metrics.evaluate_clip(
        c["frames"], 25.0, c["spec"].caption, [c["ref"]], (c["audio"], speech.SAMPLE_RATE), face=face
    )
    given.pop("details")
    assert given == {k: v for k, v in clean[0].items() if k != "details"}
    wrong = readers.find_faces(other["frames"])[0]
    assert abs(float(np.nanmedian(wrong.cx)) - float(np.nanmedian(face.cx))) > 4  # the two faces stand apart
    moved = metrics.evaluate_clip(c["frames"], 25.0, None, [], (c["audio"], speech.SAMPLE_RATE), face=wrong)
    assert moved["sync_c"] < given["sync_c"] - 0.2


def test_prototypes_match_the_renderer():
    # the readers' class prototypes are constants measured on renders: a renderer change that moves them fails
    fresh = readers.calibrate_prototypes(48, seed=1)
    for k, v in readers.PROTOTYPES.items():
        assert np.allclose(fresh[k], v, atol=0.05), (k, fresh[k], v)


def test_copy_paste_validation_orders_truth_blend_and_paste(tmp_path):
    """`python -m humo.proving_ground.validate --copy` on a small dataset read back from its files: the pasted
    reference reads the most copying, the half blend less, the true clips none."""
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.proving_ground.validate import validate_copy

    manifest, _ = synthesize_dataset(SynthConfig(out=tmp_path, clips=8, frames=(9, 9), seed=5), progress=False)
    res = validate_copy(str(manifest), n=8)
    assert res["clips"] == 8 and set(res) == {"truth", "degraded", "pasted", "blend", "clips"}
    t, b, p = res["truth"], res["blend"], res["pasted"]
    assert t["copy_scene"] < 0.1 < b["copy_scene"] < p["copy_scene"] and p["copy_scene"] > 0.8
    assert t["placement_copy"] < 0.3 < p["placement_copy"] and b["placement_copy"] < p["placement_copy"]
    # one clip would be its own mismatched reference; a codec with the wrong flag is named
    from humo.proving_ground.validate import main

    with pytest.raises(HumoError, match="at least 2"):
        validate_copy(str(manifest), n=1)
    with pytest.raises(SystemExit, match="at least 2"):
        main([str(manifest), "--copy", "--clips", "1"])
    with pytest.raises(SystemExit):
        main([str(manifest), "--vae", str(tmp_path)])
