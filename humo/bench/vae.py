"""`humo bench vae`: peak memory of decoding a short vs a long video with the toy Wan VAE.

Each decode runs in a fresh subprocess so that its peak resident memory is its own: the child resets the kernel's
high-water mark (``/proc/self/clear_refs``), decodes, and reads ``VmHWM``. The output video buffer is subtracted,
leaving the working memory of the decoder, which for a causal chunked decode should not grow with the length
(target: long/short <= 1.2x). The children fix glibc's mmap threshold so that RSS follows live tensors.
The peer is diffusers' own `AutoencoderKLWan.decode` on the same latents, which concatenates a growing list of
decoded chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TARGET_RATIO = 1.2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, nargs=2, default=[97, 193], metavar=("SHORT", "LONG"),
                        help="video lengths to compare, each 4k+1 (default: 97 193)")  # fmt: skip
    parser.add_argument("--height", type=int, default=64, help="frame height in pixels (default 64)")
    parser.add_argument("--width", type=int, default=64, help="frame width in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the toy VAE weights and the latents")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each child (0: torch default)")
    parser.add_argument("--no-peer", action="store_true", help="skip the diffusers peer runs")


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0); without it we fall back to ru_maxrss.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(impl: str, frames: int, height: int, width: int, seed: int, threads: int) -> dict:
    """Decode once in this process and report memory in bytes (runs inside the subprocess)."""
    import gc
    import resource

    import torch

    from humo.conditions.vae import WanVAE, latent_shape

    if threads > 0:
        torch.set_num_threads(threads)
    vae = WanVAE.toy(seed=seed)
    shape = (1, *latent_shape(frames, height, width, z_dim=vae.z_dim, spatial_stride=vae.spatial_stride))
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))

    def decode(z):
        if impl == "humo":
            return vae.decode(z)
        mean, std = vae._stats(torch.float32, torch.device("cpu"))
        with torch.no_grad():
            return vae.model.decode(z * std + mean).sample

    decode(latents[:, :, :2])  # warm-up: lazily created kernels and thread pools are not the decoder's memory
    gc.collect()
    exact = _reset_peak()
    base = _rss_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = decode(latents)
    seconds = time.perf_counter() - t0
    peak = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out_bytes = out.numel() * out.element_size()
    return {
        "impl": impl,
        "frames": int(out.shape[2]),
        "peak_bytes": (peak - base) * 1024,
        "out_bytes": out_bytes,
        "work_bytes": (peak - base) * 1024 - out_bytes,
        "seconds": seconds,
        "exact": exact,
    }


def _spawn(impl: str, frames: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "humo.bench.vae", "--child", impl, str(frames), str(args.height), str(args.width),
           str(args.seed), str(args.threads)]  # fmt: skip
    # A fixed mmap threshold makes glibc return every large freed tensor to the kernel at once. Its default,
    # adaptive threshold moves activations into the heap where fragmentation inflates peak RSS depending on the
    # allocation history rather than on the decoder; both implementations are measured the same way.
    env = dict(os.environ, PYTHONWARNINGS="ignore", MALLOC_MMAP_THRESHOLD_="131072")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"VAE bench child failed ({impl}, {frames} frames):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def run(args: argparse.Namespace) -> int | None:
    from humo.conditions.vae import check_video_size

    short, long_ = args.frames
    for f in (short, long_):
        check_video_size(f, args.height, args.width)
    impls = ["humo"] if args.no_peer else ["humo", "diffusers"]
    results: dict[tuple[str, int], dict] = {}
    print(f"toy Wan VAE decode, {args.height}x{args.width}, one subprocess per run (peak RSS over the decode)")
    print(f"{'impl':<10} {'frames':>6} {'peak MiB':>9} {'output MiB':>10} {'work MiB':>9} {'seconds':>8}")
    for impl in impls:
        for f in (short, long_):
            r = _spawn(impl, f, args)
            results[(impl, f)] = r
            flag = "" if r["exact"] else "  (ru_maxrss: includes start-up)"
            print(
                f"{impl:<10} {r['frames']:>6} {_mib(r['peak_bytes']):>9} {_mib(r['out_bytes']):>10} "
                f"{_mib(r['work_bytes']):>9} {r['seconds']:>8.1f}{flag}"
            )

    def ratio(impl: str) -> float:
        a = max(results[(impl, short)]["work_bytes"], 1)
        return max(results[(impl, long_)]["work_bytes"], 0) / a

    ours = ratio("humo")
    verdict = "ok" if ours <= TARGET_RATIO else "ABOVE TARGET"
    print(f"humo working memory {long_} vs {short} frames: {ours:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    if not args.no_peer:
        peer = ratio("diffusers")
        print(f"diffusers plain decode working memory {long_} vs {short} frames: {peer:.2f}x")
        ours_peak = results[("humo", long_)]["peak_bytes"]
        peer_peak = results[("diffusers", long_)]["peak_bytes"]
        print(f"peak at {long_} frames, humo vs diffusers: {ours_peak / max(peer_peak, 1):.2f}x")
    return None


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        _impl, _f, _h, _w, _seed, _threads = sys.argv[2], *map(int, sys.argv[3:8])
        print(json.dumps(_child(_impl, _f, _h, _w, _seed, _threads)))
    else:
        p = argparse.ArgumentParser(prog="python -m humo.bench.vae")
        configure(p)
        sys.exit(run(p.parse_args()) or 0)
