"""Sequence parallel (Ulysses): a DiT forward and a whole `humo generate` split across 2 gloo processes on the CPU
equal the single-process ones, and deliberately wrong splits do not."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from humo import sequence_parallel
from humo.audio_path import AudioCrossAttention
from humo.dit import Embedded
from humo.errors import HumoError
from humo.person_masks import PersonAudio
from humo.sequence_parallel import SequenceParallel, check_device, check_heads, split
from humo.step_cache import cached_forward
from tests.helpers import dit_inputs, tiny_model

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
TOLERANCE = 1e-5  # relative to the largest value of the single-process output


def _cases():
    """name -> (model, forward kwargs): the toy, 1.7B and 17B layouts at tiny width, token counts odd (padding),
    reference frames (time index 0 for the toy's, OmniHuman-1's RoPE), audio, mask heads, local audio injection."""
    cases = {}
    toy = tiny_model("toy", seed=1)
    x, t, ctx, audio, _ = dit_inputs(toy.cfg, batch=2, frames=3, h=4, w=12, seed=2)  # 3 x 1 x 3 = 9 tokens
    audio[:, -1] = 0  # the reference frame's window
    cases["toy"] = (toy, dict(x=x, t=t, context=ctx, audio=audio, frame_times=(0, 1, 0), return_mask=True))
    x1, t1, c1, a1, _ = dit_inputs(toy.cfg, batch=1, frames=1, h=4, w=4, seed=3)  # 1 token: rank 1 holds padding
    cases["toy-one-token"] = (toy, dict(x=x1, t=t1[:1], context=c1, audio=a1))

    small = tiny_model("humo-1.7b", seed=4, person_mask_blocks=1, mask_head_blocks=1)
    x, t, ctx, audio, _ = dit_inputs(small.cfg, batch=2, frames=4, h=6, w=10, seed=5)  # 4 x 3 x 5 = 60 tokens
    cases["humo-1.7b"] = (small, dict(x=x[:, :, :3], t=t, context=ctx, audio=audio[:, :3], return_mask=True))
    g = torch.Generator().manual_seed(6)
    windows = torch.randn(1, 2, *audio.shape[1:], generator=g)
    masks = torch.rand(1, 2, 2, 6, 10, generator=g)
    persons = PersonAudio(windows, masks, ref_frames=(2, 3))  # 2 generated frames, then each person's reference
    cases["humo-1.7b-persons"] = (
        small,
        dict(x=x, t=t, context=ctx, audio=audio, persons=persons, return_mask=True, return_persons=True),
    )

    big = tiny_model("humo-17b", seed=7)
    x, t, ctx, audio, y = dit_inputs(big.cfg, batch=2, frames=3, h=6, w=10, seed=8)  # 45 tokens
    cases["humo-17b"] = (big, dict(x=x, t=t, context=ctx, audio=audio, y=y))
    return cases


def _run(cases, sp=None) -> dict[str, torch.Tensor]:
    """Every case's outputs (velocities, mask logits), and two steps of step caching on the toy."""
    out = {}
    extra = {} if sp is None else {"sequence_parallel": sp}
    with torch.no_grad():
        for name, (model, kwargs) in cases.items():
            result = model(**kwargs, **extra)
            for k, v in enumerate(result if isinstance(result, tuple) else (result,)):
                if v is not None:
                    out[f"{name}/{k}"] = v.float().contiguous()
        model, kwargs = cases["toy"]
        inputs = {k: v for k, v in kwargs.items() if k != "return_mask"} | extra
        _, _, first = cached_forward(model, inputs, None, 0.5)
        moved = inputs | {"x": inputs["x"] * 1.01, "t": inputs["t"] - 10}
        velocity, _, second = cached_forward(model, moved, first, 0.5)
        out["cache/velocity"], out["cache/distance"] = velocity.contiguous(), second.distance.contiguous()
    return out


def _wrong_rope(self):
    """RoPE of local positions: each rank numbers its slice from 0."""
    return self.rope if self.shard is None else (self.rope[0][: self.shard.size], self.rope[1][: self.shard.size])


def _wrong_audio(self, q, audio_tokens, shard):
    """Audio windows read as if every rank's slice started at token 0."""
    return _right_audio(self, q, audio_tokens, dataclasses.replace(shard, sp=SequenceParallel(0, shard.sp.world)))


_right_audio = AudioCrossAttention._attend_slice


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    sp, cases = SequenceParallel(rank, WORLD), _cases()
    results = _run(cases, sp)
    toy = {"toy": cases["toy"]}
    local = lambda q, k, v, shard: sequence_parallel.attention(q, k, v)  # noqa: E731 - no all-to-all
    with mock.patch.object(sequence_parallel, "self_attention", local):
        results["wrong/no-all-to-all"] = _run(toy, sp)["toy/0"]
    with mock.patch.object(Embedded, "token_rope", property(_wrong_rope)):
        results["wrong/local-rope"] = _run(toy, sp)["toy/0"]
    with mock.patch.object(AudioCrossAttention, "_attend_slice", _wrong_audio):
        results["wrong/audio-frames"] = _run(toy, sp)["toy/0"]
    save_file(results, str(Path(folder) / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def test_split_forward_equals_one_process(tmp_path):
    torch.set_num_threads(1)
    want = _run(_cases())
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]
    for key in want:
        for got in ranks:  # every rank gets the whole output
            assert got[key].shape == want[key].shape, key
            assert _relative(got[key], want[key]) <= TOLERANCE, f"{key}: {_relative(got[key], want[key]):.3g}"
    print("max relative difference", max(_relative(ranks[0][k], want[k]) for k in want))
    assert torch.equal(ranks[0]["cache/distance"] > 0, want["cache/distance"] > 0)
    # The comparison can fail: a split without the all-to-all, with local RoPE positions, or with the audio
    # windows of the wrong frames is far off.
    for wrong in ("no-all-to-all", "local-rope", "audio-frames"):
        assert _relative(ranks[0][f"wrong/{wrong}"], want["toy/0"]) > 1e-3, wrong


def test_split_and_gather_round_trip_with_padding():
    x = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    shards = [SequenceParallel(r, 2).shard(5) for r in range(2)]
    parts = [split(x, s) for s in shards]
    assert [p.shape[1] for p in parts] == [3, 3]
    assert torch.equal(torch.cat(parts, 1)[:, :5], x) and not parts[1][:, 2].any()


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(HumoError, match="4 attention heads, not divisible by 3") as e:
        check_heads(4, 3)
    assert "\n" not in str(e.value)
    check_heads(4, 2)
    with pytest.raises(HumoError, match="--device mps: sequence parallel runs on cuda"):
        check_device("mps")
    from humo.pipeline import LAYOUTS, HumoPipeline

    with pytest.raises(HumoError, match="not divisible"):
        HumoPipeline(LAYOUTS["toy"], tiny_model("toy"), None, None, None, sequence_parallel=SequenceParallel(0, 3))


def test_each_rank_takes_its_own_gpu_or_fails_in_one_line(monkeypatch):
    from humo.sequence_parallel import local_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_device("cuda", 1) == "cuda:1" and local_device("cpu", 3) == "cpu"
    with pytest.raises(HumoError, match="--device cuda:1: under sequence parallel each process takes its local rank"):
        local_device("cuda:1", 0)  # every rank on GPU 1
    with pytest.raises(HumoError, match="local rank 2 has no GPU of its own \\(this node has 2\\)"):
        local_device("cuda", 2)


def test_sequence_parallel_attention_refuses_gradients():
    shard = SequenceParallel(0, 1).shard(4)
    q = torch.randn(1, 4, 2, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference only"):  # before any collective
        sequence_parallel.self_attention(q, q, q, shard)


# ---------------------------------------------------------------------------------------------------------------
# The whole command under torchrun


def _media(folder: Path) -> list[str]:
    from tests import golden

    png, wav = golden.media(folder)
    return ["--image", png, "--audio", wav]


def _generate(folder: Path, name: str, nproc: int | None, *extra: str) -> subprocess.CompletedProcess:
    """`humo generate` on the bundled toy model (alone, or under torchrun with `nproc` processes) through
    tests/sp_generate.py, which saves the latents each rank decodes or would decode."""
    out = folder / name
    args = ["--prompt", "a woman talks", *_media(folder), "--height", "48", "--width", "48", "--frames", "13"]
    args += ["--steps", "3", "--seed", "5", "--device", "cpu", "--out", str(out / "video.mp4")]
    args += ["--png-frames", str(out / "png"), *extra]
    script = [str(ROOT / "tests" / "sp_generate.py"), str(out / "latents"), *args]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if nproc is None:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *script]
    out.mkdir()
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def test_generate_under_torchrun_equals_one_process(tmp_path):
    import numpy as np
    from PIL import Image

    one = _generate(tmp_path, "one", None, "--cache", "0.05")
    assert one.returncode == 0, one.stderr
    two = _generate(tmp_path, "two", WORLD, "--cache", "0.05")
    assert two.returncode == 0, two.stderr
    want = torch.load(tmp_path / "one" / "latents.rank0.pt")
    for rank in range(WORLD):
        got = torch.load(tmp_path / "two" / f"latents.rank{rank}.pt")
        assert _relative(got, want) <= TOLERANCE, f"rank {rank}: {_relative(got, want):.3g}"
    print("latents: max relative difference", _relative(torch.load(tmp_path / "two" / "latents.rank0.pt"), want))
    frames = [sorted((tmp_path / run / "png").iterdir()) for run in ("one", "two")]
    assert len(frames[0]) == len(frames[1]) > 0
    for a, b in zip(*frames):  # the decoded frames: equal up to a rounding at a half level
        diff = np.abs(np.asarray(Image.open(a), dtype=int) - np.asarray(Image.open(b), dtype=int))
        assert diff.max() <= 1, a.name
    # rank 0 alone prints: the job line and the result once, as one process does
    for line in ("job:", "done:", "sequence parallel: each DiT pass's tokens split across 2 processes"):
        assert two.stdout.count(line) == 1, two.stdout
    assert one.stderr.count("step cache:") == two.stderr.count("step cache:") == 1


def test_generate_with_heads_not_divisible_fails_in_one_line(tmp_path):
    run = _generate(tmp_path, "three", 3)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("humo: error:")]
    assert errors == [
        "humo: error: sequence parallel over 3 processes: the toy DiT has 4 attention heads, not divisible by 3 "
        "(use --nproc-per-node dividing 4)"
    ], run.stderr
    assert not (tmp_path / "three" / "video.mp4").exists()


def test_an_error_of_another_rank_alone_is_said_by_it_after_the_wait(monkeypatch, capsys):
    """Rank 0 says the errors every rank meets (the test above); a rank's own error, which rank 0 never meets, is not
    swallowed: after the wait it comes out as that rank's one line, while its other output stays quiet."""
    import time

    from humo.commands import generate

    def failing(args, world, local_rank):
        print("job: something rank 0 alone prints")
        raise HumoError(f"sequence parallel: local rank {local_rank} has no GPU of its own")

    waits = []
    monkeypatch.setattr(sequence_parallel, "environment", lambda: (1, 2, 1))
    monkeypatch.setattr(generate, "_run", failing)
    monkeypatch.setattr(time, "sleep", waits.append)
    with pytest.raises(HumoError, match=r"^rank 1: sequence parallel: local rank 1 has no GPU of its own$"):
        generate.run(None)
    assert waits == [generate.RANK_ERROR_WAIT_S] and generate.RANK_ERROR_WAIT_S > 0
    assert "job:" not in capsys.readouterr().out
