"""Long video from motion frames: segments that continue from the previous one's last frames, with the audio
windows continuing across each join (humo/pipeline.py: plan_segments, continue_conditions). A continuation is one
latent stream: the motion frames' two latent frames, then the new frames in fours (no second "first frame")."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from humo.constants import valid_frames
from humo.errors import HumoError
from humo.pipeline import LAYOUTS, MOTION_FRAMES, GenerationRequest, HumoPipeline, plan_segments
from humo.toy import toy_components
from tests.helpers import randomize


@pytest.mark.parametrize("frames, segment", [(9, 9), (17, 9), (49, 17), (97, 49), (1497, 49), (13, 97)])
def test_segments_tile_the_video_in_valid_lengths(frames, segment):
    plan = plan_segments(frames, segment)
    starts = [s for s, _, _ in plan]
    assert starts[0] == 0 and all(b == a + k for (a, _, k), b in zip(plan, starts[1:]))
    assert sum(k for _, _, k in plan) == frames
    (_, first, _), rest = plan[0], plan[1:]
    assert valid_frames(first) and first <= segment
    # a continuation's clip: the motion frames and 4k new ones, a whole 1 + 4k-frame clip no longer than a segment
    assert all(n % 4 == 0 and valid_frames(MOTION_FRAMES + n) and MOTION_FRAMES + n <= segment for _, n, _ in rest)
    assert all(k <= n for _, n, k in plan)
    assert len(plan) == (1 if frames <= segment else 1 + -(-(frames - segment) // (segment - MOTION_FRAMES)))


@pytest.fixture(scope="module")
def pipe_and_audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    t = np.arange(16000) / 16000
    sf.write(d / "a.wav", (0.3 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16000)
    dit, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=1)
    randomize(dit, seed=1, scale=0.05)
    layout = dataclasses.replace(LAYOUTS["toy"], frames=9)  # segments of 9 frames
    pipe = HumoPipeline(layout, dit, vae, text, audio, progress=False, log=lambda m: None)
    return pipe, str(d / "a.wav"), vae


def test_a_long_video_is_made_in_segments_that_continue_from_motion_frames(pipe_and_audio):
    pipe, wav, vae = pipe_and_audio
    seen, x_in, sampled = [], [], []
    inner, dit_forward, inner_sample = pipe.continue_conditions, pipe.dit.forward, pipe.sample

    def spy(enc, start, length, previous):
        seg = inner(enc, start, length, previous)
        seen.append((enc, start, length, previous.clone(), seg))
        return seg

    def record(x, *a, **k):
        x_in.append((len(seen), x.detach().clone()))  # which segment's pass
        return dit_forward(x, *a, **k)

    def keep(req, enc, label="sampling"):
        out = inner_sample(req, enc, label)
        sampled.append(out[0].clone())
        return out

    pipe.continue_conditions, pipe.dit.forward, pipe.sample = spy, record, keep
    try:
        r = pipe("a man talks", [], wav, frames=25, height=32, width=32, steps=2, seed=3)
    finally:
        pipe.continue_conditions, pipe.dit.forward, pipe.sample = inner, dit_forward, inner_sample
    assert r.frames.shape == (25, 32, 32, 3)
    # 9 frames, then clips of the 5 motion frames and 4 new ones (segments of 9 frames)
    assert [(s, n) for _, s, n, _, _ in seen] == [(9, 4), (13, 4), (17, 4), (21, 4)]
    assert r.mask.shape[0] == 7  # the whole video's latent frames (1 + 24 / 4), as one pass would give
    enc, start, length, previous, seg = seen[0]
    c = seg.conditions
    # motion frames: the previous segment's last 5 decoded frames, encoded; clean at the start of the time axis
    assert c.n_motion == 2 and torch.equal(c.motion, vae.encode(previous[:, -MOTION_FRAMES:].unsqueeze(0)).float())
    assert c.clean().tolist() == [True, True, False, True]  # motion, 1 new latent frame (4 frames), 1 reference
    continued = [x for k, x in x_in if k == 1]
    assert continued and all(torch.equal(x[:, :, :2], c.motion.expand(x.shape[0], -1, -1, -1, -1)) for x in continued)
    # the audio windows are those of one clip from frame start - 5: motion latent 1 holds frames start-6 ..
    # start+1, the first new latent frame (frames start .. start+3) start-2 .. start+5, no zero slot at the join
    f = enc.features
    assert torch.equal(c.windows[0, 1], f[start - 6 : start + 2])
    assert torch.equal(c.windows[0, 2], f[start - 2 : start + 6])
    assert c.windows[0, -1].abs().sum() == 0  # the reference frame (text+audio: one zero reference) hears nothing
    # the segment is decoded as the one stream it is, motion frames first, and its new frames kept
    stream = vae.decode(torch.cat([c.motion, sampled[1]], dim=2).float())[0].clamp(-1, 1)
    expect = ((stream[:, MOTION_FRAMES:] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert np.array_equal(r.frames[9:13], expect)


def test_segment_masks_map_onto_the_video_frames_and_back():
    from humo.pipeline import latent_frame_mask, video_frame_mask

    m = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    frames = video_frame_mask(m, 9)
    assert frames.shape == (9, 2, 2) and np.array_equal(frames[0], m[0]) and np.array_equal(frames[5:9], m[[2] * 4])
    assert np.array_equal(latent_frame_mask(frames), m)
    assert video_frame_mask(m, 7).shape[0] == 7  # a last segment keeps fewer frames than it made
    cont = video_frame_mask(m, 12, first_alone=False)  # a continuation's new frames: fours from the first
    assert cont.shape == (12, 2, 2) and np.array_equal(cont[:4], m[[0] * 4]) and np.array_equal(cont[8:], m[[2] * 4])


def test_one_segment_is_the_plain_video_and_bad_segment_lengths_are_refused(pipe_and_audio):
    pipe, wav, _ = pipe_and_audio
    calls = []
    inner = pipe.continue_conditions
    pipe.continue_conditions = lambda *a: calls.append(a) or inner(*a)
    try:
        r = pipe("a man talks", [], wav, frames=9, height=32, width=32, steps=1)
    finally:
        pipe.continue_conditions = inner
    assert r.frames.shape[0] == 9 and not calls
    for bad in (7, 10, 5):
        with pytest.raises(HumoError, match=f"--segment-frames {bad}: must be 4k\\+1 and at least 9"):
            GenerationRequest("a", segment_frames=bad).resolved(pipe.layout)


def test_the_17b_layout_continues_through_its_channel_condition(tmp_path):
    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from tests.helpers import TINY, TINY_AUDIO

    toy, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=0)
    shared = {**TINY, **TINY_AUDIO, "text_dim": text.dim, "text_len": text.text_len}
    cfg = dit_preset("humo-17b", **{**shared, "audio_feat_dim": toy.cfg.audio_feat_dim})
    dit = randomize(HumoDiT(cfg), seed=2, scale=0.05).eval()
    layout = dataclasses.replace(LAYOUTS["humo-17b"], frames=9)
    pipe = HumoPipeline(layout, dit, vae, text, audio, progress=False, log=lambda m: None)
    ys, segment = [], []
    forward, inner = pipe.dit.forward, pipe.continue_conditions
    pipe.dit.forward = lambda x, *a, y=None, **k: ys.append((len(segment), y)) or forward(x, *a, y=y, **k)
    pipe.continue_conditions = lambda *a: segment.append(1) or inner(*a)
    r = pipe("a man talks", frames=13, height=32, width=32, steps=1)
    assert r.frames.shape[0] == 13
    cont = [y for k, y in ys if k == 1]
    assert all(y.shape[2] == 2 + 1 for y in cont)  # motion (2) + the second segment's 4 new frames (1 latent frame)
    assert cont and all((y[:, :4, :2] == 1).all() and (y[:, :4, 2:] == 0).all() for y in cont)
    # the new frame's condition is the zero clip's latent at that place in the stream (a group, not a first frame)
    zero = vae.zero_video_latent(9, 32, 32)[0][:, 2]
    assert all(torch.allclose(y[0, 4:, 2], zero.to(y)) for y in cont)
