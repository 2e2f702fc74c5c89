"""`humo bench pose`: the pose guider's forward and backward on real heatmaps, floored against raw Gaussians.

`humo.pose.render_heatmaps` sets values under `HEATMAP_FLOOR` to zero. Without the floor a Gaussian's far tail,
and the product of a row tail and a column tail, land in float32's denormal range, where CPU arithmetic slows
down many times. The peer is the same guider on the same heatmaps with the floor undone (the raw Gaussians),
measured in the same process. Prints the share of denormal values in each, seconds per training step of the
guider (forward, backward into its weights, as in training) and the ratio raw / floored (> 1: the floor is
faster), and the largest difference between the two guiders' outputs (what the floor changes for the model).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=8, help="clips per step (default 8, the toy recipe's)")
    parser.add_argument("--latent-frames", type=int, default=13, help="latent frames per clip (default 13)")
    parser.add_argument("--size", type=int, default=16, help="latent height = width (default 16, the toy's)")
    parser.add_argument("--people", type=int, default=1, help="people per frame (default 1)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps each (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")


def _seconds_per_step(guider, maps: torch.Tensor, steps: int) -> float:
    for _ in range(2):  # warm-up: oneDNN picks its kernels on the first calls
        guider.features(maps).square().sum().backward()
    start = time.perf_counter()
    for _ in range(steps):
        guider.features(maps).square().sum().backward()
    return (time.perf_counter() - start) / steps


def run(args: argparse.Namespace) -> int:
    from humo.configs import dit_preset
    from humo.errors import HumoError
    from humo.pose import render_heatmaps
    from humo.pose_guider import PoseGuider

    for name in ("batch", "latent_frames", "size", "people", "steps"):
        if getattr(args, name) < 1:
            raise HumoError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dit_preset("toy", pose_channels=16)
    frames = 1 + 4 * (args.latent_frames - 1)
    side = args.size * cfg.pose_scale
    g = torch.Generator().manual_seed(0)
    points = torch.rand(args.batch * frames, args.people, cfg.pose_joints, 3, generator=g)
    points[..., 2] = 1.0

    def batch(render) -> torch.Tensor:  # [J, B*T, H, W] -> [B, J, T, H, W]
        maps = render(points, side, side, cfg.pose_sigma)
        return maps.reshape(cfg.pose_joints, args.batch, frames, side, side).transpose(0, 1).contiguous()

    floored, raw = batch(render_heatmaps), batch(partial(render_heatmaps, floor=0.0))
    torch.manual_seed(0)
    guider = PoseGuider(cfg)
    with torch.no_grad():
        diff = (guider.features(floored) - guider.features(raw)).abs().max().item()
    t_floor = _seconds_per_step(guider, floored, args.steps)
    t_raw = _seconds_per_step(guider, raw, args.steps)

    def denormal(x: torch.Tensor) -> float:
        return ((x != 0) & (x.abs() < TINY)).float().mean().item()

    print(f"pose guider, {args.batch} clips x {frames} frames, {cfg.pose_joints} joints at {side}x{side}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"  floored heatmaps (ours): {t_floor:.3f} s/step, denormal values {denormal(floored):.1%}")
    print(f"  raw Gaussians (peer):    {t_raw:.3f} s/step, denormal values {denormal(raw):.1%}")
    print(f"  ratio raw / floored: {t_raw / t_floor:.2f}x; largest feature difference {diff:.2e}")
    return 0
