"""Flow-matching samplers: the release's schedule, exactness on analytic flows, fresh state, helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.sampler import (
    add_noise,
    flow_schedule,
    make_sampler,
    sample_timesteps,
    velocity_target,
    velocity_to_x0,
)


def release_formula(steps: int, shift: float, n: int = 1000) -> tuple[list[float], list[int]]:
    """The release's set_timesteps written out per step: sigma_max = float32(1 - 1/n), uniform to 0, shifted."""
    sigma_max = float(np.float32(1 - 1 / n))
    sig, ts = [], []
    for k in range(steps):
        base = sigma_max - k * sigma_max / steps
        s = shift * base / (1 + (shift - 1) * base)
        sig.append(s)
        ts.append(int(s * n))
    return sig, ts


@pytest.mark.parametrize("name", ["unipc", "euler"])
def test_schedule_matches_release_formula(name):
    sampler = make_sampler(name, steps=50, shift=5.0)
    sig, ts = release_formula(50, 5.0)
    assert sampler.timesteps.shape == (50,) and sampler.sigmas.shape == (51,)
    assert sampler.timesteps.tolist() == ts
    torch.testing.assert_close(sampler.sigmas[:-1], torch.tensor(sig, dtype=torch.float32), rtol=1e-6, atol=1e-7)
    assert float(sampler.sigmas[-1]) == 0.0
    assert torch.all(sampler.sigmas[1:] < sampler.sigmas[:-1])
    # As printed by the release's FlowUniPCMultistepScheduler(shift=1).set_timesteps(50, shift=5).
    assert sampler.timesteps[:8].tolist() == [999, 995, 991, 987, 982, 978, 973, 968]
    assert sampler.timesteps[-3:].tolist() == [241, 172, 92]
    assert int((sampler.timesteps > 980).sum()) == 5


def test_schedule_other_settings():
    sigmas, timesteps = flow_schedule(steps=4, shift=1.0)
    expected = [0.999 * (1 - k / 4) for k in range(4)] + [0.0]
    torch.testing.assert_close(sigmas, torch.tensor(expected, dtype=torch.float32))
    assert timesteps.tolist() == [math.floor(s * 1000) for s in sigmas[:-1].tolist()]
    sig3, ts3 = release_formula(30, 3.0)
    s3 = make_sampler("unipc", steps=30, shift=3.0)
    assert s3.timesteps.tolist() == ts3
    one = make_sampler("euler", steps=1, shift=5.0)
    assert one.timesteps.shape == (1,) and float(one.sigmas[-1]) == 0.0


def point_mass_velocity(x0):
    """The exact flow towards a single data point x0: along x_t = (1-s) x0 + s n, v = n - x0 = (x_t - x0) / s."""
    return lambda x, sigma: (x - x0) / sigma


@pytest.mark.parametrize("name", ["euler", "unipc"])
def test_exact_velocity_reaches_x0(name):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=g)
    noise = torch.randn(2, 4, 3, 4, 4, generator=g)
    sampler = make_sampler(name, steps=20, shift=5.0)
    v = point_mass_velocity(x0)
    x = add_noise(x0, noise, float(sampler.sigmas[0]))
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(v(x, float(sampler.sigmas[i])), t, x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)
    assert not torch.allclose(noise, x0, atol=1e-1)


def gaussian_problem():
    """Data N(mu, s^2) per element, noise N(0, 1): the flow's velocity is analytic and the ODE maps n to mu + s n."""
    g = torch.Generator().manual_seed(1)
    n = torch.randn(2, 3, 4, 4, generator=g)
    mu = torch.linspace(-1, 1, n.numel()).reshape(n.shape)
    s = torch.linspace(0.5, 2.0, n.numel()).reshape(n.shape)

    def velocity(x, sigma):
        var = (1 - sigma) ** 2 * s**2 + sigma**2
        mean_x0 = mu + (1 - sigma) * s**2 / var * (x - (1 - sigma) * mu)
        return (x - mean_x0) / sigma

    def start(sigma):  # exact ODE state at sigma for this noise
        return (1 - sigma) * mu + ((1 - sigma) ** 2 * s**2 + sigma**2).sqrt() * n

    return velocity, start, mu + s * n


def solve(name, steps, shift):
    velocity, start, target = gaussian_problem()
    sampler = make_sampler(name, steps=steps, shift=shift)
    x = start(float(sampler.sigmas[0]))
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(velocity(x, float(sampler.sigmas[i])), t, x)
    return float((x - target).abs().max())


def test_unipc_converges_on_analytic_flow_with_higher_order_than_euler():
    unipc = [solve("unipc", n, 1.0) for n in (20, 40)]
    euler = [solve("euler", n, 1.0) for n in (20, 40)]
    assert unipc[1] < 5e-3
    assert unipc[0] / unipc[1] > 3.0  # about second order: doubling steps cuts the error ~4x
    assert 1.5 < euler[0] / euler[1] < 2.5  # first order
    assert unipc[1] < euler[1] / 10
    assert solve("unipc", 50, 5.0) < 0.05  # the release's setting


def test_fresh_samplers_do_not_share_state():
    g = torch.Generator().manual_seed(2)
    x_init = torch.randn(1, 4, 2, 4, 4, generator=g)

    def model(x, t):
        return torch.sin(x) * (1 + t / 1000) + 0.1 * x

    def run(sampler, x):
        for t in sampler.timesteps:
            x = sampler.step(model(x, float(t)), t, x)
        return x

    first = run(make_sampler("unipc", steps=10), x_init.clone())
    second = run(make_sampler("unipc", steps=10), x_init.clone())
    assert torch.equal(first, second)
    # Two samplers stepped alternately give the same as each alone: nothing is shared between them.
    a, b = make_sampler("unipc", steps=10), make_sampler("unipc", steps=10)
    xa, xb = x_init.clone(), 2 * x_init
    for t in a.timesteps:
        xa = a.step(model(xa, float(t)), t, xa)
        xb = b.step(model(xb, float(t)), t, xb)
    assert torch.equal(xa, first)
    assert torch.equal(xb, run(make_sampler("unipc", steps=10), 2 * x_init))
    with pytest.raises(RuntimeError, match="already taken"):
        a.step(xa, None, xa)


def test_step_checks_timestep_and_shape():
    sampler = make_sampler("euler", steps=5)
    x = torch.zeros(1, 2, 1, 2, 2)
    with pytest.raises(ValueError, match="expects timestep"):
        sampler.step(x, float(sampler.timesteps[1]), x)
    with pytest.raises(ValueError, match="shape"):
        sampler.step(torch.zeros(1, 2, 1, 2, 3), sampler.timesteps[0], x)
    sampler.step(x, sampler.timesteps[0], x)
    assert sampler.step_index == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(steps=0),
        dict(steps=-3),
        dict(steps=2.5),
        dict(name="ddim"),
        dict(shift=-1.0),
        dict(shift=0.0),
        dict(shift=float("nan")),
    ],
)
def test_bad_sampler_args(kwargs):
    with pytest.raises(HumoError):
        make_sampler(**kwargs)


def test_flow_matching_helpers():
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 4, 2, 2, 2, generator=g)
    noise = torch.randn(3, 4, 2, 2, 2, generator=g)
    sigma = torch.tensor([0.0, 0.25, 1.0])
    xt = add_noise(x0, noise, sigma)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[2], noise[2])
    torch.testing.assert_close(xt[1], 0.75 * x0[1] + 0.25 * noise[1])
    torch.testing.assert_close(add_noise(x0, noise, 0.5), 0.5 * (x0 + noise))
    v = velocity_target(x0, noise)
    torch.testing.assert_close(v, noise - x0)
    torch.testing.assert_close(velocity_to_x0(xt, v, sigma), x0)


def test_sample_timesteps():
    sig, t = sample_timesteps(4096, generator=torch.Generator().manual_seed(0))
    assert sig.shape == t.shape == (4096,)
    assert bool(((sig > 0) & (sig < 1)).all())
    torch.testing.assert_close(t, sig * 1000)
    assert abs(float(torch.logit(sig).mean())) < 0.1 and abs(float(torch.logit(sig).std()) - 1.0) < 0.1
    again, _ = sample_timesteps(4096, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sig, again)
    uni, _ = sample_timesteps(4096, distribution="uniform", generator=torch.Generator().manual_seed(0))
    assert abs(float(uni.mean()) - 0.5) < 0.03
    shifted, _ = sample_timesteps(4096, distribution="uniform", shift=3.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, 3 * uni / (1 + 2 * uni))
    with pytest.raises(HumoError):
        sample_timesteps(4, distribution="cosine")
    with pytest.raises(HumoError):
        sample_timesteps(0)
