"""`humo bench cache`: step caching on a trained model, against no caching in the same run: time per video, the
share of guidance-branch passes that ran the blocks, and the proving-ground metrics of both on held-out clips.

Speed needs a trained model: how much a branch's input moves between steps, and so what a threshold skips,
depends on what the model has learnt (random weights skip almost nothing or almost everything)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="a proving-ground weights folder (default: the bundled humo/assets/toy)")
    parser.add_argument("--manifest", required=True, help="held-out manifest (humo synth --split heldout)")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips per setting (default 16)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (default 20, as humo eval)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="(default 0.05 0.1 0.2)")
    parser.add_argument("--json", help="also write the results here")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from humo.commands.generate import bundled_weights
    from humo.errors import HumoError, atomic_path, check_output
    from humo.evaluation.heldout import evaluate_model, heldout_samples, quiet_pipeline
    from humo.step_cache import check_threshold

    weights = args.weights or str(bundled_weights())
    for t in args.thresholds:
        check_threshold(t, "--thresholds")
    if args.clips < 2:
        raise HumoError(f"--clips {args.clips}: at least 2 (each clip's mismatched inputs are another's)")
    heldout_samples(args.manifest, args.clips)  # a bad manifest fails here, before any model loads
    if args.json:
        check_output(args.json, "--json", inputs=[args.manifest], overwrite=True)
    pipe = quiet_pipeline(weights, "toy")
    block_rows = [0]

    def count(_module, inputs):  # rows entering the first block: the branch passes that ran the blocks
        block_rows[0] += inputs[0].shape[0]

    hook = pipe.dit.blocks[0].register_forward_pre_hook(count)
    results = {}
    try:
        evaluate_model(weights, args.manifest, clips=2, steps=2, pipe=pipe, log=None)  # warm-up
        for threshold in [None, *args.thresholds]:
            block_rows[0] = 0
            r = evaluate_model(
                weights, args.manifest, clips=args.clips, steps=args.steps, pipe=pipe, log=None, cache=threshold
            )
            rows = list(r["rows"].values())
            results["none" if threshold is None else f"{threshold:g}"] = {
                "seconds_per_clip": sum(row["seconds"] for row in rows) / len(rows),
                "block_rows": block_rows[0],
                "summary": r["summary"],
            }
    finally:
        hook.remove()
    base = results["none"]
    print(
        f"step caching, {weights}: {args.clips} held-out clips, {args.steps} steps, "
        f"{torch.get_num_threads()} threads; every setting in this run"
    )
    print(f"{'threshold':>9} {'s/clip':>7} {'speed-up':>8} {'passes run':>10}  text  subj gain  sync ratio  mask IoU")
    for name, res in results.items():
        s = res["summary"]
        gain = _sub(s["subject_acc"], s["subject_acc_mismatched"])
        ratio = None if not s["sync_c_shuffled"] else s["sync_c"] / s["sync_c_shuffled"]
        print(
            f"{name:>9} {res['seconds_per_clip']:7.2f} {base['seconds_per_clip'] / res['seconds_per_clip']:7.2f}x"
            f" {res['block_rows'] / base['block_rows']:10.0%}  {_f(s['text_mean'])}  {_f(gain):>9}"
            f"  {_f(ratio):>10}  {_f(s['mask_iou']):>8}"
        )
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


def _sub(a, b):
    return None if a is None or b is None else a - b


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"
