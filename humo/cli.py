"""The `humo` command. Each subcommand lives in its own module, imported only when it runs.

A subcommand module provides ``configure(parser)`` (adds its arguments) and ``run(args) -> int | None``.
A `HumoError` raised anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import sys
import warnings

from humo.errors import HumoError

# name -> (module, one-line help). Modules are imported lazily so `humo --help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("humo.commands.generate", "generate a video from text, reference images and audio"),
    "demo": ("humo.commands.demo", "run the bundled proving-ground model on a bundled example"),
    "plan": ("humo.commands.plan", "the settings (dtype, guidance batch, block swap) that fit a GPU's memory"),
    "presets": ("humo.commands.presets", "list the model presets and the guidance presets with their parameters"),
    "inspect": ("humo.commands.inspect", "tell which preset a checkpoint matches, its size and dtype"),
    "convert": ("humo.commands.convert", "convert a DiT checkpoint between humo/official and diffusers layouts"),
    "bench": ("humo.commands.bench", "benchmarks that print a ratio against a peer run in the same process"),
    "synth": ("humo.commands.synth", "write a proving-ground dataset of synthetic talking characters"),
    "eval": ("humo.commands.eval", "proving-ground metrics for generated videos; --real: real-video evaluators"),
    "train": ("humo.commands.train", "progressive multimodal HuMo training"),
    "train-vae": ("humo.commands.train_vae", "train the toy Wan VAE on proving-ground clips"),
    "fit-codec": ("humo.commands.fit_codec", "fit the proving ground's linear latent codec to a manifest's clips"),
    "precompute": ("humo.commands.precompute", "cache VAE latents, text embeddings and audio features"),
    "pose": ("humo.commands.pose", "driving poses: `humo pose extract VIDEO -o pose.json` (the pose extra)"),
    "ablate": ("humo.commands.ablate", "rerun the proving-ground ablation study"),
    "ratios": ("humo.commands.ratios", "OmniHuman-1's condition-ratio study in the proving ground"),
    "data": ("humo.commands.data", "real talking videos -> a training manifest: `humo data run|status` (resumable)"),
}


# Commands that write files and talk while they do: each takes -q/--quiet (print only warnings and errors), its
# own or the one added here. The others (presets, inspect, bench) print their result, which --quiet would hide.
QUIET_COMMANDS = (
    "generate", "demo", "convert", "synth", "eval", "train", "train-vae", "fit-codec", "precompute", "ablate", "pose",
    "ratios",
)  # fmt: skip


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humo", description="HuMo human-centric video generation")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if e.name != module_name:
                    raise
                p.set_defaults(_missing=name)
                continue
            module.configure(p)
            if name in QUIET_COMMANDS and "--quiet" not in p._option_string_actions:
                p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
                p.set_defaults(_quiet_here=True)  # commands with their own --quiet (generate) keep what they must say
            p.set_defaults(_run=module.run)
    return parser


#: Whether the user set the libraries' console settings, decided at the first call of `quiet_libraries` (later calls
#: would see the values that call set and take them for the user's).
_USER_QUIET_SETTINGS: bool | None = None


def quiet_libraries() -> None:
    """Keep third-party chatter off the console: transformers' and the hub's progress bars and advice while weights
    load, and PIL's DecompressionBombWarning (humo resizes every reference image to the video size anyway). Set
    before those libraries are imported; an explicit environment setting of the user's wins."""
    global _USER_QUIET_SETTINGS
    if _USER_QUIET_SETTINGS is None:
        _USER_QUIET_SETTINGS = "TRANSFORMERS_VERBOSITY" in os.environ or "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", message=".*decompression bomb.*")
    if _USER_QUIET_SETTINGS:
        return
    # already imported (humo used as a library, or called twice in one process): they read the settings at import
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


class _WarningsOnly(io.TextIOBase):
    """A stderr that passes on only the lines that are warnings or errors (progress bars and notes are dropped)."""

    def __init__(self, target):
        self.target, self.pending = target, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = re.split(r"[\r\n]", self.pending)  # a progress bar redraws its line with \r
        for line in lines:
            if line.startswith("humo:") or "Warning" in line or "Error" in line:
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def quieted(quiet: bool):
    """With `quiet`, the command's own output is dropped and stderr keeps only warnings and errors."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(_WarningsOnly(sys.stderr)):
        yield


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    only = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only if only in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except HumoError as e:  # an argument's own check (e.g. a --box before any --person)
        print(f"humo: error: {e}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"humo: error: the '{args._missing}' command is not available in this version", file=sys.stderr)
        return 2
    try:
        with quieted(getattr(args, "_quiet_here", False) and args.quiet):
            code = args._run(args)
    except HumoError as e:
        print(f"humo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("humo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into a reader that stopped (`humo presets | head`): not an error of ours. Point stdout at
        # devnull so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
