"""`humo` with bad or unusual inputs, through the CLI: one-line errors before any model loads, no input changed,
nothing left at the output path (issue 16)."""

import argparse
import hashlib
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from humo.cli import main
from humo.pipeline import HumoPipeline


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A reference image, a WAV and an MP4 with an audio track (a clip a user might drive a video with)."""
    from humo.media.video import write_video

    d = tmp_path_factory.mktemp("media")
    t = np.arange(8000) / 16000
    sf.write(d / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16000)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(d / "r.png")
    frames = (rng.random((5, 16, 16, 3)) * 255).astype("uint8")
    write_video(d / "clip.mp4", frames, audio=(0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"))
    return d


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: every error here must come before it."""

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(HumoPipeline, "from_pretrained", refuse)


def refused(capsys, argv, message, inputs=(), absent=()):
    """`humo ARGV` exits 2 with one `humo: error:` line holding `message`; inputs unchanged, `absent` not there."""
    before = {p: digest(p) for p in inputs}
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("humo: error:"), err
    assert message in err[0], err[0]
    for p in inputs:
        assert digest(p) == before[p], f"input {p} was changed"
    for p in absent:
        assert not os.path.exists(p), f"{p} was left behind"
    return err[0]


def generate(*args):
    return ["generate", "--prompt", "a man talks", "--height", 32, "--width", 32, "--frames", 5, "--steps", 1, *args]


def test_out_equal_to_the_audio_input_is_refused(media, capsys, no_loading):
    clip = media / "clip.mp4"
    refused(capsys, generate("--audio", clip, "--out", clip, "--overwrite"), "is also an input", [clip])
    # the same file by another spelling
    other = media / "sub" / ".." / "clip.mp4"
    refused(capsys, generate("--audio", clip, "--out", other, "--overwrite"), "is also an input", [clip])


def test_out_hard_link_to_an_image_input_is_refused(media, tmp_path, capsys, no_loading):
    link = tmp_path / "ref.mp4"
    os.link(media / "r.png", link)
    refused(capsys, generate("--image", media / "r.png", "--out", link, "--overwrite"), "is also an input", [link])


def test_existing_out_needs_overwrite(media, tmp_path, capsys, no_loading):
    out = tmp_path / "old.mp4"
    out.write_bytes(b"the user's earlier video")
    refused(capsys, generate("--out", out), "already exists (pass --overwrite", [out])


def test_out_folder_and_unwritable_places_fail_before_loading(tmp_path, capsys, no_loading):
    (tmp_path / "dir.mp4").mkdir()
    refused(capsys, generate("--out", tmp_path / "dir.mp4"), "is a folder")
    (tmp_path / "file").write_text("x")
    refused(capsys, generate("--out", tmp_path / "file" / "o.mp4"), "is a file, not a folder", [tmp_path / "file"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4", "file"]  # no probe or temporary file left
    if os.geteuid() != 0:  # root writes through permission bits (see the next test)
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        refused(capsys, generate("--out", ro / "o.mp4"), "cannot write in", absent=[ro / "o.mp4"])


def test_read_only_folder_for_root_too(tmp_path, capsys, no_loading, monkeypatch):
    """Root writes through permission bits, so a read-only mount is what stops it: the write probe catches it."""
    import humo.errors

    def read_only(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(humo.errors.tempfile, "mkstemp", read_only)
    refused(capsys, generate("--out", tmp_path / "o.mp4"), f"cannot write in {tmp_path} (Read-only file system)")


def test_png_frames_folder_holding_an_input_is_refused(media, capsys, no_loading):
    argv = generate("--image", media / "r.png", "--out", media / "new.mp4", "--png-frames", media, "--overwrite")
    refused(capsys, argv, "holds an input", [media / "r.png"], [media / "new.mp4"])


def test_png_frames_naming_a_file_fails_before_the_video(tmp_path, capsys, no_loading):
    (tmp_path / "frames").write_text("notes")
    out = tmp_path / "o.mp4"
    refused(
        capsys,
        generate("--out", out, "--png-frames", tmp_path / "frames"),
        "exists and is not a folder",
        [tmp_path / "frames"],
        [out],
    )


def test_out_mp4_suffix_any_case(tmp_path, capsys, no_loading):
    refused(capsys, generate("--out", tmp_path / "o.avi"), "must end in .mp4")
    # .MP4 passes the name check and reaches the (refused) model load
    with pytest.raises(AssertionError, match="model was loaded"):
        main([str(a) for a in generate("--out", tmp_path / "o.MP4")])


@pytest.mark.parametrize(
    "seed, message", [(str(2**70), "out of range"), ("-2", "out of range"), ("1e3", "not an integer")]
)
def test_seed_range_is_checked_before_loading(tmp_path, capsys, no_loading, seed, message):
    out = tmp_path / "o.mp4"
    refused(capsys, generate("--seed", seed, "--out", out), f"--seed {seed}: {message}", absent=[out])


@pytest.mark.parametrize(
    "device, message",
    [("tpu", "unknown"), ("meta", "not supported")]
    + ([] if torch.cuda.is_available() else [("cuda", "this torch build has no usable CUDA device")]),
)
def test_device_is_checked_against_torch(tmp_path, capsys, no_loading, device, message):
    out = tmp_path / "o.mp4"
    refused(capsys, generate("--device", device, "--out", out), f"--device {device}: {message}", absent=[out])


def write_cases(folder, text: str):
    (folder / "cases.json").write_text(text)
    return folder / "cases.json"


@pytest.mark.parametrize(
    "names, message",
    [
        (["../escaped"], "must be a plain file name"),
        (["a/b"], "must be a plain file name"),
        ([".."], "must be a plain file name"),
        (["same", "./same"], "must be a plain file name"),
        (["Same", "same"], "would write the same file"),
    ],
)
def test_case_names_are_file_names(tmp_path, capsys, no_loading, names, message):
    cases = write_cases(tmp_path, json.dumps({n: {"prompt": "a man"} for n in names}))
    out_dir = tmp_path / "out"
    refused(capsys, ["generate", "--cases", cases, "--out-dir", out_dir], message, [cases], [out_dir])
    assert not (tmp_path / "escaped.mp4").exists()


def test_duplicate_case_key_is_an_error(tmp_path, capsys, no_loading):
    cases = write_cases(tmp_path, '{"one": {"prompt": "a"}, "one": {"prompt": "b"}}')
    refused(capsys, ["generate", "--cases", cases, "--out-dir", tmp_path / "o"], "duplicate key 'one'", [cases])


def test_existing_case_output_needs_overwrite(tmp_path, capsys, no_loading):
    cases = write_cases(tmp_path, json.dumps({"one": {"prompt": "a"}}))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "one.mp4").write_bytes(b"earlier")
    refused(
        capsys,
        ["generate", "--cases", cases, "--out-dir", tmp_path / "o"],
        "case 'one': output",
        [cases, tmp_path / "o" / "one.mp4"],
    )


def test_convert_onto_its_own_input_is_refused(tmp_path, capsys):
    from humo.checkpoint import save_dit
    from tests.helpers import tiny_model

    src = save_dit(tiny_model("humo-1.7b"), tmp_path / "m.safetensors")
    refused(capsys, ["convert", src, src, "--to", "humo", "--overwrite"], "is also an input", [src])
    dst = tmp_path / "d.safetensors"
    dst.write_bytes(b"keep me")
    refused(capsys, ["convert", src, dst, "--to", "diffusers"], "already exists", [src, dst])


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory):
    from humo.toy import toy_components, write_toy_weights

    return write_toy_weights(
        tmp_path_factory.mktemp("w"), components=toy_components(seed=0, num_layers=2, mask_head_blocks=1)
    )


def test_checkpoint_of_the_wrong_dtype_is_one_line(toy_weights, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    weights = tmp_path / "w"
    shutil.copytree(toy_weights, weights)
    sd = load_file(weights / "dit.safetensors")
    sd = {k: (v * 100).to(torch.int8) if v.is_floating_point() else v for k, v in sd.items()}
    save_file(sd, weights / "dit.safetensors")
    out = tmp_path / "o.mp4"
    line = refused(
        capsys,
        generate("--weights", weights, "--preset", "toy", "--device", "cpu", "--out", out),
        "not floating point",
        [weights / "dit.safetensors"],
        [out],
    )
    assert "dit.safetensors" in line and "torch.int8" in line


def test_eval_of_a_truncated_mp4_is_one_line(media, tmp_path, capsys):
    data = (media / "clip.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    refused(capsys, ["eval", cut, "--prompt", "a man"], f"video {cut}: cannot", [cut])


def test_random_seed_is_drawn_printed_and_used(toy_weights, media, tmp_path, capsys):
    from humo.media.video import read_metadata

    out = tmp_path / "o.mp4"
    args = generate("--weights", toy_weights, "--preset", "toy", "--device", "cpu", "--seed", "random", "--out", out)
    assert main([str(a) for a in args]) == 0
    lines = capsys.readouterr().out.splitlines()
    seed = int(next(line for line in lines if line.startswith("seed ")).split()[1])
    assert 0 <= seed < 2**63
    assert f"seed={seed}" in read_metadata(out)["description"].replace(": ", "=")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "100001"], "100001 frames"),
        (["--height", "8192", "--width", "8192"], "8192x8192 (toy is made for 64x64)"),
    ],
)
def test_jobs_far_beyond_the_model_need_allow_large(tmp_path, capsys, no_loading, extra, message):
    argv = ["generate", "--prompt", "a", "--out", tmp_path / "o.mp4", *extra]
    refused(capsys, argv, message, absent=[tmp_path / "o.mp4"])
    assert "--allow-large" in refused(capsys, argv, message)
    with pytest.raises(AssertionError, match="model was loaded"):  # the flag lets it through to loading
        main([str(a) for a in argv] + ["--allow-large"])


def test_long_audio_with_frames_minus_one_is_sized_from_the_header(toy_weights, tmp_path, capsys, no_loading):
    """A minute of audio is made in segments (the job line says how many); six minutes need --allow-large."""
    wav = tmp_path / "long.wav"
    sf.write(wav, np.zeros(16000 * 60, "int16"), 16000)
    argv = generate(
        "--weights", toy_weights, "--device", "cpu", "--audio", wav, "--frames", -1, "--out", tmp_path / "o.mp4"
    )
    with pytest.raises(AssertionError, match="model was loaded"):
        main([str(a) for a in argv])
    out = capsys.readouterr().out
    # 1497 frames in segments of the toy's 49, each after the first adding 44 new frames to 5 motion frames:
    # 1 + ceil(1448 / 44) = 34 segments, 1 step of 3 passes (null, t, ta), no pass longer than a segment
    assert "job: 1497 frames at 32x32 -> 52 video" in out and "102 DiT passes (34 segments x 1 steps)" in out, out
    sf.write(wav, np.zeros(16000 * 360, "int16"), 16000)
    refused(capsys, argv, "8997 frames (359.9 s of video)", [wav])


def test_audio_cut_to_frames_is_warned(media, tmp_path, capsys, no_loading):
    with pytest.raises(AssertionError, match="model was loaded"):
        main([str(a) for a in generate("--audio", media / "a.wav", "--out", tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"humo: warning: audio {media / 'a.wav'}: 0.50 s, but --frames 5 makes 0.20 s of video; "
        "the last 0.30 s are cut (--frames -1 keeps it all)"
    ]


def test_clipped_audio_and_long_prompt_are_warned(toy_weights, tmp_path, capsys):
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(4000, 1.5, "float32"), 16000, subtype="FLOAT")  # float WAV keeps values beyond 1
    before = digest(loud)
    out = tmp_path / "o.mp4"
    prompt = " ".join(["a man talks"] * 100)
    argv = generate("--weights", toy_weights, "--preset", "toy", "--device", "cpu", "--audio", loud, "--out", out)
    argv[argv.index("--prompt") + 1] = prompt
    assert main([str(a) for a in argv]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("humo: warning:")]
    assert any("beyond full scale [-1, 1] are clipped" in w for w in warnings), warnings
    assert any("prompt: 301 tokens, over the text encoder's limit" in w for w in warnings), warnings
    assert digest(loud) == before and out.is_file()


def test_output_keeps_the_source_audio_rate_and_channels(toy_weights, tmp_path, capsys):
    import av

    t = np.arange(int(44100 * 0.5)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)], axis=1)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, stereo.astype("float32"), 44100)
    out = tmp_path / "o.mp4"
    argv = generate("--weights", toy_weights, "--preset", "toy", "--device", "cpu", "--audio", wav, "--out", out)
    assert main([str(a) for a in argv]) == 0
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert (a.codec_context.name, a.sample_rate, a.channels) == ("aac", 44100, 2)
        assert a.bit_rate and a.bit_rate >= 96_000


def test_ctrl_c_mid_sampling_stops_quickly_and_leaves_nothing(toy_weights, media, tmp_path):
    import re
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o.mp4"
    argv = generate("--weights", toy_weights, "--preset", "toy", "--device", "cpu", "--out", out)
    argv[argv.index("--steps") + 1] = 100000  # would run for hours
    proc = subprocess.Popen(
        [sys.executable, "-m", "humo", *map(str, argv), "--audio", str(media / "a.wav"), "--frames", "-1"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A child inherits an ignored SIGINT (some tests' libraries ignore it in the worker); a user's shell
        # delivers it, so the child starts with the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    step = None
    try:
        for line in proc.stderr:  # said after the first sampling step: how long a step takes on this machine now
            found = re.search(r"sample  first step ([0-9.]+) s", line)  # the line may follow the progress bar
            if found:
                step = float(found.group(1))
                break
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130 and "humo: interrupted" in rest and "Traceback" not in rest
    # within a few steps' time: on a quiet machine a step takes ~0.1 s; a loaded one stretches both alike
    assert step is not None and elapsed < 3 + 5 * step, f"took {elapsed:.1f} s to stop (a step: {step:.2f} s)"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, no temporary file


def test_ctrl_c_between_segments_of_a_long_video_leaves_nothing(toy_weights, media, tmp_path):
    """A long video stopped after some of its segments are made: no video, no temporary file, no traceback."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "o.mp4"
    argv = generate("--weights", toy_weights, "--preset", "toy", "--device", "cpu", "--out", out)
    argv[argv.index("--frames") + 1] = 49  # 11 segments of 9 frames, each after the first adding 4
    argv[argv.index("--steps") + 1] = 10
    proc = subprocess.Popen(
        [sys.executable, "-m", "humo", *map(str, argv), "--segment-frames", "9", "--audio", str(media / "a.wav")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a user's shell delivers it
    )
    said = []
    try:
        for line in proc.stdout:
            said.append(line)
            if "segment 3/11: frames 13..16" in line:  # two segments made, decoded and continued from
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert any("segment 1/11: frames 0..8" in line for line in said), said
    assert proc.returncode == 130 and "humo: interrupted" in rest and "Traceback" not in rest, rest
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, no temporary file


def test_seconds_sets_the_length(toy_weights, media, tmp_path, capsys, no_loading):
    """--seconds is --frames in seconds (rounded down to 4k+1 frames); with --frames it is refused."""
    argv = generate("--weights", toy_weights, "--device", "cpu", "--out", tmp_path / "o.mp4")
    del argv[argv.index("--frames") : argv.index("--frames") + 2]
    with pytest.raises(AssertionError, match="model was loaded"):
        main([str(a) for a in argv + ["--seconds", "2.1"]])
    assert "job: 49 frames at 32x32" in capsys.readouterr().out  # 52.5 frames -> 49
    refused(capsys, argv + ["--seconds", "2", "--frames", "49"], "--seconds 2 and --frames 49: give one of them")
    refused(capsys, argv + ["--seconds", "0.01"], "--seconds 0.01: must be at least one frame (0.04 s)")
    refused(capsys, argv + ["--seconds", "nan"], "--seconds nan: must be at least one frame")


def test_documented_guidance_config_example_loads(tmp_path):
    import re

    from humo.guidance import load_schedule

    doc = (__import__("pathlib").Path(__file__).parent.parent / "docs" / "guidance-config.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    for n, block in enumerate(blocks):
        (tmp_path / f"{n}.json").write_text(block)
        schedule = load_schedule(tmp_path / f"{n}.json", {"text", "image", "audio"})
        assert schedule.phases
    assert [len(p.chain) for p in schedule.phases] == [3, 4]


def test_preset_is_found_from_the_weights_folder(toy_weights, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert main([str(a) for a in generate("--weights", toy_weights, "--device", "cpu", "--out", out, "-q")]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    assert out.is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, generate("--weights", empty, "--out", tmp_path / "p.mp4"), "no known model in it")


def test_presets_lists_models_and_guidance_scales(capsys):
    from humo.pipeline import LAYOUTS

    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name, lay in LAYOUTS.items():
        assert f"{name}" in text and f"{lay.height}x{lay.width}, {lay.frames} frames" in text
    assert "release-17b   scale_t=5.0, scale_a=5.5, step_change=980.0" in text
    assert "guidance release-1.7b scale_t=2 scale_a=2 scale_i=2" in text  # the toy layout's own scales


def test_output_piped_into_a_reader_that_stops_is_not_a_traceback():
    import subprocess
    import sys

    # As in `humo presets | head -1` when head has gone: the reader closes the pipe before humo writes.
    code = "import sys; from humo.cli import main; sys.exit(main(['presets']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err


def test_demo_refuses_a_non_mp4_out(tmp_path, capsys, no_loading):
    refused(capsys, ["demo", "--out", tmp_path / "demo.avi"], "--out", absent=[tmp_path / "demo.avi"])


def test_demo_metrics_stand_beside_their_bar_and_baseline():
    from humo.commands.demo import metric_lines
    from humo.evaluation.heldout import BARS

    lines = metric_lines({"text_mean": 0.5, "sync_c": 0.9, "sync_offset": 3, "details": {}}, 0.25, BARS)
    assert lines[0].split() == ["text_mean", "0.500", "bar", ">=", str(BARS["text_mean"])]
    assert lines[1].startswith("sync_c") and f"baseline 0.250 = {BARS['sync_ratio'] * 0.25:.3f}" in lines[1]
    assert lines[2].split()[:2] == ["sync_offset", "3"] and len(lines) == 3  # details are not a metric line


def test_frames_that_cannot_be_placed_leave_no_video(tmp_path):
    from humo.errors import HumoError
    from humo.media.video import write_video

    (tmp_path / "png" / "000000.png").mkdir(parents=True)  # a folder where the first frame must go
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    with pytest.raises((OSError, HumoError)):
        write_video(tmp_path / "o.mp4", frames, png_dir=tmp_path / "png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["png"]
    write_video(tmp_path / "new.mp4", frames, png_dir=tmp_path / "fresh")
    assert len(list((tmp_path / "fresh").iterdir())) == 5
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes it, not mkdtemp's 0700


def test_first_step_gives_a_time_and_memory_estimate(toy_weights, tmp_path, capsys):
    import re

    out = tmp_path / "o.mp4"
    argv = generate("--weights", toy_weights, "--device", "cpu", "--out", out)
    argv[argv.index("--steps") + 1] = 3
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    # 5 frames -> 2 latent frames of 8x8 (the toy VAE's stride 4), the toy's 1x4x4 patches -> 2 * 2 * 2 tokens
    assert re.search(r"text, 5 frames 32x32, 0 reference frame\(s\), 8 tokens per pass", err), err
    assert "Loading weights" not in err  # transformers' progress bar stays off the console
    assert re.search(r"first step \d+\.\d\d s: about \d+ s for 3 steps, peak memory \d+\.\d GB", err), err


def test_eval_json_onto_its_video_is_refused(media, capsys):
    clip = media / "clip.mp4"
    refused(capsys, ["eval", clip, "--prompt", "a man", "--json", clip], "--json", [clip])


def test_audio_too_short_for_frames_minus_one_names_the_file(tmp_path, capsys, no_loading):
    wav = tmp_path / "blip.wav"
    sf.write(wav, np.zeros(300, "float32"), 16000)  # 0.019 s: under one video frame
    refused(capsys, generate("--audio", wav, "--frames", -1, "--out", tmp_path / "o.mp4"), f"audio {wav}: ", [wav])


def test_pil_decompression_bomb_warning_stays_off_the_console(toy_weights, media, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "o.mp4"
    argv = [str(a) for a in generate("--weights", toy_weights, "--image", media / "r.png", "--out", out, "-q")]
    # The 40x30 reference is over a lowered limit, so PIL warns exactly as it does for a large photo.
    code = f"import sys, PIL.Image as I; I.MAX_IMAGE_PIXELS = 1000; from humo.cli import main; sys.exit(main({argv}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and out.is_file()


def test_the_job_is_sized_before_any_model_loads(tmp_path):
    from humo.commands.generate import job_summary
    from humo.pipeline import LAYOUTS, GenerationRequest

    lay = LAYOUTS["humo-17b"]
    r = GenerationRequest(prompt="a man talks").resolved(lay)
    line = job_summary(r, r.frames, lay, tmp_path)  # an official layout: Wan's 8x VAE, 1x2x2 patches
    assert "97 frames at 720x1280 -> 90000 video + 0 reference tokens" in line
    assert "100 DiT passes (50 steps)" in line and "17.06B parameters" in line  # text only: 2 passes a step
    toy = LAYOUTS["toy"]
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "codec.json").write_text(json.dumps({"stride": 8}))
    r = GenerationRequest(prompt="a man talks", steps=3, height=64, width=64, frames=49)
    r = r.resolved(toy)
    assert "208" not in job_summary(r, 49, toy, tmp_path)  # an 8x codec: 13 frames x 2 x 2 tokens
    assert "52 video + 0 reference tokens" in job_summary(r, 49, toy, tmp_path)


def test_the_job_line_gives_time_and_memory_from_a_quick_measurement(toy_weights, tmp_path, capsys, no_loading):
    """With the device known, the line before loading has the estimated DiT compute at a measured rate and the
    memory against the device's free memory (the model itself never loads: `no_loading` fails it)."""
    import re

    with pytest.raises(AssertionError, match="loaded"):
        main([str(a) for a in generate("--weights", toy_weights, "--device", "cpu", "--out", tmp_path / "o.mp4")])
    out = capsys.readouterr().out
    assert re.search(r"estimate: DiT compute \d+\.\d s at \d+\.\d\d TFLOP/s \(measured\)", out), out
    assert re.search(r"weights \+ activations \d+\.\d\d GiB of \d+\.\d GiB free", out), out


def test_a_job_beyond_the_device_memory_is_refused_then_warned(toy_weights, tmp_path, capsys, monkeypatch):
    import humo.sizing

    out = tmp_path / "o.mp4"
    argv = generate("--weights", toy_weights, "--device", "cpu", "--out", out)
    monkeypatch.setattr(humo.sizing, "free_memory_bytes", lambda device: 1000)  # far below any model
    monkeypatch.setattr(HumoPipeline, "from_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
    msg = refused(capsys, argv, "GiB free", absent=[out])
    assert "estimated" in msg and "--allow-large" in msg
    # between 1x and 2x the free memory: a warning, and the job goes on (here to the loader, which fails the test)
    from humo.commands.generate import size_job
    from humo.pipeline import LAYOUTS, GenerationRequest

    lay = LAYOUTS["toy"]
    req = GenerationRequest("a man talks", steps=1, height=32, width=32, frames=5).resolved(lay)
    need = size_job(req, 5, lay, toy_weights)[-1].memory_bytes
    monkeypatch.setattr(humo.sizing, "free_memory_bytes", lambda device: int(need * 0.75))
    with pytest.raises(AssertionError):
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "may run out of memory" in err and len(err.strip().splitlines()) == 1


def test_quiet_is_offered_by_every_command_that_writes_files_and_silences_it(tmp_path, capsys):
    from humo.cli import QUIET_COMMANDS, build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in QUIET_COMMANDS:
        assert "--quiet" in subs[name]._option_string_actions, name
    assert main(["synth", "--out", str(tmp_path / "loud"), "--clips", "2", "--frames", "5:5"]) == 0
    assert "wrote 2 clips" in capsys.readouterr().out  # what --quiet must take away
    assert main(["synth", "--out", str(tmp_path / "d"), "--clips", "2", "--frames", "5:5", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert (tmp_path / "d" / "manifest.jsonl").is_file()


def test_quiet_stderr_keeps_warnings_and_errors_and_drops_progress():
    import io

    from humo.cli import _WarningsOnly

    sink = io.StringIO()
    err = _WarningsOnly(sink)
    err.write("stage 1:  40%|####      | 4/10 [00:01<00:01]\r")
    err.write("stage 1: 100%|##########| 10/10\n")
    err.write("humo: warning: audio a.wav: 3 sample(s) beyond")
    err.write(" full scale\nUserWarning: something a library says\nloaded toy in 0.3 s\n")
    assert sink.getvalue().splitlines() == [
        "humo: warning: audio a.wav: 3 sample(s) beyond full scale",
        "UserWarning: something a library says",
    ]


def test_a_second_command_in_one_process_keeps_the_libraries_quiet(monkeypatch):
    """The first call decides whether the user set the libraries' console settings; a later call must not take
    the values that call set for the user's (transformers imported in between kept its progress bars on)."""
    from transformers.utils import logging as hf_logging

    from humo import cli

    monkeypatch.setattr(cli, "_USER_QUIET_SETTINGS", None)
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    try:
        cli.quiet_libraries()  # the first command: nothing set by the user
        hf_logging.enable_progress_bar()  # as if transformers had been imported after it, with bars on
        cli.quiet_libraries()  # the second command
        assert not hf_logging.is_progress_bar_enabled()
        monkeypatch.setattr(cli, "_USER_QUIET_SETTINGS", True)  # a user's own setting is left alone
        hf_logging.enable_progress_bar()
        cli.quiet_libraries()
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.disable_progress_bar()
