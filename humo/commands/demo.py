"""`humo demo`: generate a talking-character video with the bundled proving-ground model and score it.

The model (humo/assets/toy) was trained by scripts/train_toy_model.sh; the example (humo/assets/example) is a
held-out identity's reference image, speech-like audio and caption. Without the bundled model (a stripped
checkout) the demo runs the whole pipeline on a tiny RANDOM toy model and says so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", help="output .mp4 (default outputs/demo.mp4, replaced on each run; a named file needs --overwrite)"
    )
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    parser.add_argument("--seed", type=int, default=666666, help="noise seed, 0..2**63-1 (default 666666)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--strip", help="also write a PNG strip of 8 evenly spaced frames here")
    parser.add_argument(
        "--sync-plot", help="also write a PNG of the mouth opening read from the frames against the audio's loudness"
    )


def assets() -> Path:
    return Path(__file__).resolve().parent.parent / "assets"


def example_inputs(folder: Path) -> tuple[str, str, str]:
    """(prompt, reference image, audio): the bundled example, or a synthetic stand-in written to `folder`."""
    ex = assets() / "example"
    if (ex / "prompt.txt").is_file():
        return (ex / "prompt.txt").read_text().strip(), str(ex / "reference.png"), str(ex / "speech.wav")
    import numpy as np
    import soundfile as sf
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (64, 64), (90, 140, 200))
    d = ImageDraw.Draw(img)
    d.ellipse((18, 10, 46, 42), fill=(224, 172, 105))
    d.rectangle((14, 44, 50, 64), fill=(200, 40, 40))
    d.ellipse((26, 30, 38, 36), fill=(90, 20, 20))
    img.save(folder / "reference.png")
    t = np.arange(2 * 16000) / 16000
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2  # five syllables a second, pauses between
    wave = 0.3 * envelope * np.sin(2 * np.pi * 160 * t) * (1 + 0.5 * np.sin(2 * np.pi * 700 * t))
    sf.write(folder / "speech.wav", wave.astype("float32"), 16000)
    return "a woman talks in front of a blue wall", str(folder / "reference.png"), str(folder / "speech.wav")


def strip_image(frames, count: int = 8, scale: int = 2):
    """`count` evenly spaced frames of `frames` ([T, H, W, 3] uint8) side by side, each enlarged `scale` times
    (nearest) -> a PIL image."""
    import numpy as np
    from PIL import Image

    idx = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    strip = np.concatenate([frames[i] for i in idx], axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)


def write_strip(frames, path, count: int = 8, scale: int = 2) -> Path:
    """A PNG of `strip_image(frames, count, scale)`, written atomically."""
    from humo.errors import atomic_path

    with atomic_path(path) as tmp:
        strip_image(frames, count, scale).save(tmp, format="PNG")
    return Path(path)


def sync_curves(frames, fps: float, audio: np.ndarray, sample_rate: int) -> dict:
    """The mouth opening read from `frames` and the loudness envelope of `audio`, per frame, with their
    correlation at offset 0 and at the best offset (what Sync-C is made of)."""
    from humo.proving_ground import metrics, readers

    img = readers._as_float(frames)
    mouth = readers.mouth_opening(img)
    envelope = readers.audio_envelope(audio, sample_rate, fps, img.shape[0])
    scores = metrics.sync_scores(mouth, envelope)
    keys = ("sync_corr0", "sync_corr", "sync_offset")
    return {"mouth": mouth, "envelope": envelope, **{k: scores.get(k) for k in keys}}


def write_sync_plot(curves: dict, fps: float, path) -> Path:
    """A PNG of the two curves of `sync_curves` against time, the correlations in the title; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humo.media.image import save_figure

    t = np.arange(len(curves["mouth"])) / fps
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t, curves["envelope"], label="audio loudness envelope", color="tab:orange")
    ax.plot(t, curves["mouth"], label="mouth opening read from the video", color="tab:blue", marker=".")
    ax.set_xlabel("seconds")
    ax.set_ylim(-0.05, 1.4)
    ax.set_title(
        f"correlation {_num(curves['sync_corr0'])} at offset 0, {_num(curves['sync_corr'])} at the best offset "
        f"({curves['sync_offset']} frames)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    return save_figure(fig, path)


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def metric_lines(scores: dict, sync_chance: float | None, bars: dict) -> list[str]:
    """One line per metric: its value beside the bar or baseline that makes it good (see docs/proving-ground.md)."""

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    sync_bar = None if sync_chance is None else bars["sync_ratio"] * sync_chance
    good = {
        "text_scene": "1.0 = the scene read back exactly as the prompt says",
        "text_action": "1.0 = the action read back exactly",
        "text_object": "1.0 = the object read back exactly",
        "text_mean": f"bar >= {bars['text_mean']}",
        "subject_acc": f"1.0 = the reference's identity; bar: >= {bars['subject_gain']} above a mismatched "
        "reference (`humo eval --model` measures it)",
        "subject_sim": "higher is closer to the reference",
        "sync_c": f"bar >= {bars['sync_ratio']}x the reversed-audio baseline {fmt(sync_chance)}"
        + (f" = {sync_bar:.3f}" if sync_bar is not None else ""),
        "sync_d": "lower is better",
        "sync_offset": "0 frames; good within +-1",
        "face_found": "1.0 = a face in every frame",
    }
    return [f"{k:12} {fmt(v):>7}   {good.get(k, '')}".rstrip() for k, v in scores.items() if k in good]


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, check_output
    from humo.pipeline import MAX_SEED, HumoPipeline

    # The default path holds the demo's own previous result, so `make demo` can be rerun; a path the user names
    # may be anything of theirs and is only replaced when asked.
    overwrite = args.overwrite or args.out is None
    out = Path(args.out or "outputs/demo.mp4")
    if out.suffix.lower() != ".mp4":
        raise HumoError(f"--out {out}: must end in .mp4")
    if not 0 <= args.seed <= MAX_SEED:
        raise HumoError(f"--seed {args.seed}: out of range (0..2**63-1)")
    check_output(out, "--out", overwrite=overwrite)
    for flag, path in (("--strip", args.strip), ("--sync-plot", args.sync_plot)):
        if path:
            check_output(path, flag, [out], overwrite=overwrite)
    weights = assets() / "toy"
    trained = (weights / "dit.safetensors").is_file()
    if not trained:
        from humo.toy import write_toy_weights

        weights = out.parent / ".toy-random"
        print(
            "NOTE: no trained proving-ground model is bundled yet; running the whole pipeline on a tiny RANDOM "
            "toy model (the video will look like noise)."
        )
        if not (weights / "dit.safetensors").is_file():
            write_toy_weights(weights, seed=0)
    prompt, image, audio = example_inputs(out.parent / ".demo-inputs")
    print(f"prompt: {prompt}\nreference: {image}\naudio: {audio}")
    pipe = HumoPipeline.from_pretrained(weights, "toy", device="cpu", offload=False)
    t0 = time.perf_counter()
    result = pipe(prompt, [image], audio, out=out, frames=-1, steps=args.steps, seed=args.seed)
    print(f"generated {out} ({len(result.frames)} frames) in {time.perf_counter() - t0:.1f} s")
    if args.strip:
        print(f"frame strip: {write_strip(result.frames, args.strip)}")
    try:
        from humo.proving_ground.metrics import evaluate_clip
    except ImportError:
        return 0
    from humo.evaluation.heldout import BARS

    scores = evaluate_clip(result.frames, result.fps, prompt, [image], audio)
    # The shuffled-audio baseline of the held-out eval, for one clip: the same frames against the audio reversed
    # (same voice and loudness, wrong timing), so Sync-C can be read against what chance gives.
    chance = evaluate_clip(result.frames, result.fps, None, [], np.ascontiguousarray(result.audio[::-1]))["sync_c"]
    print("proving-ground metrics (value, then what good looks like):")
    for line in metric_lines(scores, chance, BARS):
        print("  " + line)
    curves = sync_curves(result.frames, result.fps, result.audio, result.sample_rate)
    print(
        f"mouth opening vs audio loudness: correlation {_num(curves['sync_corr0'])} at offset 0, "
        f"{_num(curves['sync_corr'])} at the best offset ({curves['sync_offset']} frames; 1.0 = in step)"
    )
    if args.sync_plot:
        print(f"sync plot: {write_sync_plot(curves, result.fps, args.sync_plot)}")
    return 0
