"""Flow-matching samplers (UniPC, Euler) and the flow-matching helpers training shares with them.

Flow matching as HuMo/Wan2.1 use it (sigma in [0, 1], sigma = 1 is pure noise)::

    x_t      = (1 - sigma) * x0 + sigma * noise
    velocity = noise - x0            # what the DiT predicts ("flow_prediction")
    timestep = sigma * 1000          # what the DiT's time embedding sees

The sampling schedule is the release's (Wan2.1's ``FlowUniPCMultistepScheduler.set_timesteps``, which HuMo calls
with ``shift=5``; the config names it ``uniform_trailing``): ``steps`` sigmas uniform from ``sigma_max`` down to
(but excluding) 0, then shifted::

    sigma_max = float32(1 - 1/N)                      # N = num_train_timesteps = 1000 -> 0.999...
    base_k    = linspace(sigma_max, 0, steps + 1)[k]  # k = 0 .. steps-1  (the trailing 0 is dropped)
    sigma_k   = shift * base_k / (1 + (shift - 1) * base_k)
    t_k       = int(sigma_k * N)                      # truncated, as the release's int64 cast does
    sigmas    = [sigma_0 .. sigma_{steps-1}, 0]       # float32, final sigma 0

With 50 steps and shift 5 the timesteps are 999, 995, 991, 987, 982, 978, ... 241, 172, 92.
diffusers' own flow-sigma default starts from 1 instead of 0.999, so we hand it these sigmas explicitly (with its
own shift set to 1); the stepping itself is diffusers' ``UniPCMultistepScheduler`` (order 2, bh2, flow prediction,
final sigma 0) and ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from humo.errors import HumoError

SAMPLERS = ("unipc", "euler")

__all__ = [
    "SAMPLERS",
    "FlowSampler",
    "make_sampler",
    "flow_schedule",
    "shift_sigmas",
    "add_noise",
    "velocity_target",
    "velocity_to_x0",
    "sample_timesteps",
]


def shift_sigmas(sigmas: Tensor | np.ndarray | float, shift: float) -> Tensor | np.ndarray | float:
    """The flow-matching timestep shift ``shift * s / (1 + (shift - 1) * s)`` (keeps 0 and 1 fixed)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def _check_schedule_args(steps: int, shift: float, num_train_timesteps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise HumoError(f"sampling steps {steps!r}: must be an integer >= 1")
    if not isinstance(shift, (int, float)) or isinstance(shift, bool) or not math.isfinite(shift) or shift <= 0:
        raise HumoError(f"sampling shift {shift!r}: must be a finite number > 0")
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
        raise HumoError(f"num_train_timesteps {num_train_timesteps!r}: must be an integer >= 2")


def flow_schedule(steps: int = 50, shift: float = 5.0, num_train_timesteps: int = 1000) -> tuple[Tensor, Tensor]:
    """The release's sampling schedule (see the module docstring for the formula).

    Returns ``(sigmas, timesteps)``: sigmas float32 [steps + 1] decreasing to a final 0; timesteps float32 [steps],
    integer-valued (truncated ``sigma * N``), the values the DiT sees.
    """
    _check_schedule_args(steps, shift, num_train_timesteps)
    # The release derives sigma_max from a float32 table (1 - alphas), so 0.999 arrives as float32(0.999).
    sigma_max = float(np.float32(1.0 - 1.0 / num_train_timesteps))
    base = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    shifted = shift_sigmas(base, float(shift))
    timesteps = (shifted * num_train_timesteps).astype(np.int64)
    sigmas = np.concatenate([shifted, [0.0]]).astype(np.float32)
    return torch.from_numpy(sigmas), torch.from_numpy(timesteps).to(torch.float32)


class FlowSampler:
    """One sampling run: a fresh diffusers scheduler holding the multistep history of this run only.

    Attributes:
        name: ``"unipc"`` or ``"euler"``.
        timesteps: float32 [steps], integer values in [0, num_train_timesteps), decreasing; pass them to the DiT.
        sigmas: float32 [steps + 1], decreasing, last one 0.

    Use::

        sampler = make_sampler("unipc", steps=50, shift=5.0)
        x = noise                                   # [B, C, F, H, W] float32
        for t in sampler.timesteps:
            v = guided_velocity(x, t)               # same shape as x
            x = sampler.step(v, t, x)
    """

    def __init__(self, name: str, steps: int, shift: float, num_train_timesteps: int) -> None:
        if name not in SAMPLERS:
            raise HumoError(f"sampler {name!r}: unknown; choose one of {', '.join(SAMPLERS)}")
        self.name = name
        self.steps = steps
        self.shift = float(shift)
        self.num_train_timesteps = num_train_timesteps
        self.sigmas, self.timesteps = flow_schedule(steps, shift, num_train_timesteps)
        self._index = 0
        shifted = self.sigmas[:-1].numpy().astype(np.float64)
        if name == "unipc":
            from diffusers import UniPCMultistepScheduler

            self._scheduler = UniPCMultistepScheduler(
                num_train_timesteps=num_train_timesteps,
                solver_order=2,
                solver_type="bh2",
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                flow_shift=1.0,  # our sigmas are already shifted
                predict_x0=True,
                lower_order_final=True,
                final_sigmas_type="zero",
            )
            self._scheduler.set_timesteps(sigmas=shifted)
        else:
            from diffusers import FlowMatchEulerDiscreteScheduler

            self._scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=1.0)
            self._scheduler.set_timesteps(sigmas=shifted, timesteps=self.timesteps.numpy())
        # Start at index 0 whatever the first timestep value is (diffusers otherwise searches for it, and
        # picks the second match when a timestep repeats).
        self._scheduler.set_begin_index(0)
        # The schedulers step on their own copy: expose exactly that one. It equals flow_schedule() except when
        # shift is so large (> ~1000) that sigma_0 is within 1e-6 of 1, which diffusers' UniPC nudges below 1.
        self.sigmas = self._scheduler.sigmas.to(torch.float32).clone()
        self.timesteps = self._scheduler.timesteps.to(torch.float32).clone()

    def __len__(self) -> int:
        return self.steps

    @property
    def step_index(self) -> int:
        """How many steps have been taken."""
        return self._index

    def step(self, model_output: Tensor, t: Tensor | float | None, x: Tensor) -> Tensor:
        """Advance ``x`` from ``sigmas[i]`` to ``sigmas[i + 1]`` given the (guided) velocity at step ``i``.

        Args:
            model_output: velocity prediction, same shape as ``x``.
            t: the timestep the prediction was made at (``timesteps[i]``), checked; ``None`` skips the check.
            x: current latents, any shape (e.g. [B, C, F, H, W]), float32 recommended.
        Returns: the latents at the next sigma, same shape as ``x``.
        """
        i = self._index
        if i >= self.steps:
            raise RuntimeError(f"{self.name} sampler: all {self.steps} steps were already taken")
        if t is not None:
            t_val = float(t.reshape(-1)[0]) if isinstance(t, Tensor) else float(t)
            if t_val != float(self.timesteps[i]):
                raise ValueError(
                    f"{self.name} sampler: step {i} expects timestep {float(self.timesteps[i])}, got {t_val}"
                )
        if model_output.shape != x.shape:
            raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(x.shape)}")
        out = self._scheduler.step(model_output, self._scheduler.timesteps[i], x, return_dict=False)[0]
        self._index += 1
        return out


def make_sampler(
    name: str = "unipc", steps: int = 50, shift: float = 5.0, num_train_timesteps: int = 1000
) -> FlowSampler:
    """A new sampler with its own state (never shared between videos). Defaults are the release's.

    Raises HumoError for an unknown name, ``steps < 1`` or ``shift <= 0``.
    """
    if name not in SAMPLERS:
        raise HumoError(f"sampler {name!r}: unknown; choose one of {', '.join(SAMPLERS)}")
    _check_schedule_args(steps, shift, num_train_timesteps)
    return FlowSampler(name, steps, shift, num_train_timesteps)


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared with training.


def _per_sample(sigma: Tensor | float, like: Tensor) -> Tensor:
    """sigma as a tensor broadcastable against ``like`` ([B] -> [B, 1, 1, ...]); scalars stay scalars."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 1 and like.ndim > 1:
        sigma = sigma.reshape(-1, *([1] * (like.ndim - 1)))
    return sigma


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """``x_t = (1 - sigma) * x0 + sigma * noise``; sigma is a scalar or [B] (one per sample)."""
    s = _per_sample(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The flow-matching regression target ``noise - x0`` (same shape as x0)."""
    return noise - x0


def velocity_to_x0(x_t: Tensor, velocity: Tensor, sigma: Tensor | float) -> Tensor:
    """The clean-sample estimate ``x_t - sigma * velocity`` (a preview of where a step is heading)."""
    return x_t - _per_sample(sigma, x_t) * velocity


def sample_timesteps(
    batch: int,
    *,
    distribution: str = "logitnormal",
    loc: float = 0.0,
    scale: float = 1.0,
    shift: float = 1.0,
    num_train_timesteps: int = 1000,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Training sigmas and timesteps, one per sample.

    ``logitnormal`` (the release's training config: loc 0, scale 1) draws ``sigmoid(N(loc, scale))``; ``uniform``
    draws U(0, 1). ``shift`` then applies the same shift as sampling (1 = none).
    Returns ``(sigma [B] float32 in (0, 1), timestep [B] float32 = sigma * num_train_timesteps)``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise HumoError(f"batch {batch!r}: must be an integer >= 1")
    if not math.isfinite(shift) or shift <= 0:
        raise HumoError(f"timestep shift {shift!r}: must be a finite number > 0")
    if distribution == "logitnormal":
        if scale <= 0:
            raise HumoError(f"logit-normal scale {scale!r}: must be > 0")
        z = torch.randn(batch, generator=generator, device=device, dtype=torch.float32)
        sigma = torch.sigmoid(z * scale + loc)
    elif distribution == "uniform":
        sigma = torch.rand(batch, generator=generator, device=device, dtype=torch.float32)
    else:
        raise HumoError(f"timestep distribution {distribution!r}: unknown; choose logitnormal or uniform")
    if shift != 1.0:
        sigma = shift_sigmas(sigma, float(shift))
    return sigma, sigma * num_train_timesteps
