"""OmniHuman-1's reference positional encoding beside HuMo's: reference frames at RoPE time index 0 instead of
after the video (`DiTConfig.reference_rope`, `Conditions.frame_times`, `rope_table(times=)`)."""

import pytest
import torch

from humo.conditioning import Conditions
from humo.dit import rope_table
from humo.errors import HumoError
from tests.helpers import dit_inputs, tiny_model


def test_rope_times_default_to_frame_order_and_zero_puts_references_on_frame_zero():
    d, grid = 24, (4, 2, 3)
    default = rope_table(d, grid, 10000.0, torch.device("cpu"))
    explicit = rope_table(d, grid, 10000.0, torch.device("cpu"), (0, 1, 2, 3))
    assert all(torch.equal(a, b) for a, b in zip(default, explicit))
    cos, _ = rope_table(d, grid, 10000.0, torch.device("cpu"), (0, 1, 2, 0))
    per_frame = 2 * 3
    assert torch.equal(cos[3 * per_frame :], cos[:per_frame])  # the reference frame's positions are frame 0's
    assert not torch.equal(cos[3 * per_frame :], default[0][3 * per_frame :])
    with pytest.raises(ValueError, match="3 frame times for 4 latent frames"):
        rope_table(d, grid, 10000.0, torch.device("cpu"), (0, 1, 2))


def test_conditions_give_frame_times_by_the_configured_rule():
    refs = torch.zeros(1, 4, 1, 2, 2)
    cond = Conditions({"prompt": torch.zeros(1, 3, 8)}, refs, num_video=3, motion=torch.zeros(1, 4, 2, 2, 2))
    assert cond.frame_times("continue") is None
    assert cond.frame_times("zero") == (0, 1, 2, 3, 4, 0)
    no_refs = Conditions({"prompt": torch.zeros(1, 3, 8)}, torch.zeros(1, 4, 0, 2, 2), num_video=3)
    assert no_refs.frame_times("zero") is None


def test_the_dit_follows_the_frame_times_and_the_config_is_checked():
    model = tiny_model("humo-1.7b", seed=3)
    x, t, ctx, audio, _ = dit_inputs(model.cfg, frames=4)
    with torch.no_grad():
        plain = model(x, t, ctx, audio=audio)
        same = model(x, t, ctx, audio=audio, frame_times=(0, 1, 2, 3))
        zero = model(x, t, ctx, audio=audio, frame_times=(0, 1, 2, 0))
    assert torch.equal(plain, same) and not torch.allclose(plain, zero)
    with pytest.raises(HumoError, match="reference_rope 'first'"):
        model.cfg.replace(reference_rope="first")


def test_training_and_generation_pass_the_frame_times_of_a_zero_rope_model(tmp_path):
    from humo.data.loader import TrainingBatch
    from humo.training.objective import Draws, compute_loss

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, context, audio=None, y=None, return_mask=False, frame_times=None):
            seen.append(frame_times)
            return x * 0 + self.w

    b, c, f = 2, 4, 3
    batch = TrainingBatch(
        latents=torch.randn(b, c, f, 2, 2),
        refs=torch.randn(b, c, 1, 2, 2),
        has_ref=torch.ones(b, dtype=torch.bool),
        text=torch.randn(b, 3, 6),
        has_audio=torch.zeros(b, dtype=torch.bool),
        mask=torch.zeros(b, f, 2, 2),
        has_mask=torch.zeros(b, dtype=torch.bool),
        tasks=("subject",) * b,
        index=torch.arange(b),
    )
    off = {m: torch.zeros(b, dtype=torch.bool) for m in ("text", "image", "audio")}
    draws = Draws(torch.full((b,), 0.5), torch.full((b,), 500.0), torch.randn(b, c, f + 1, 2, 2), off)
    for rope, expected in (("continue", None), ("zero", (0, 1, 2, 0))):
        compute_loss(Spy(), batch, draws, torch.zeros(4, 6), reference_mode="replace", use_audio=False,
                     reference_rope=rope)  # fmt: skip
        assert seen[-1] == expected


def test_generation_passes_them_too(tmp_path):
    import numpy as np
    from PIL import Image

    from humo.dit import HumoDiT
    from humo.pipeline import LAYOUTS, HumoPipeline
    from humo.toy import toy_components
    from tests.helpers import randomize

    toy, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=0)
    dit = randomize(HumoDiT(toy.cfg.replace(reference_rope="zero")), seed=1, scale=0.05).eval()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")).save(tmp_path / "r.png")
    pipe = HumoPipeline(LAYOUTS["toy"], dit, vae, text, audio, progress=False, log=lambda m: None)
    seen = []
    forward = dit.forward
    dit.forward = lambda *a, **k: seen.append(k.get("frame_times")) or forward(*a, **k)
    pipe("a man talks", [str(tmp_path / "r.png")], frames=9, height=32, width=32, steps=1)
    assert seen and all(times == (0, 1, 2, 0) for times in seen)  # 3 video latent frames, then the reference
