"""`humo generate` with the latents it samples saved per rank, for tests/test_sequence_parallel.py (alone or under
torchrun): python tests/sp_generate.py PREFIX GENERATE_ARGS... writes PREFIX.rank<R>.pt."""

import os
import sys

import torch

from humo.cli import main
from humo.pipeline import HumoPipeline

_sample = HumoPipeline.sample


def _saving_sample(self, req, enc, label="sampling"):
    result = _sample(self, req, enc, label)
    torch.save(result[0], f"{sys.argv[1]}.rank{os.environ.get('RANK', '0')}.pt")
    return result


if __name__ == "__main__":
    HumoPipeline.sample = _saving_sample
    sys.exit(main(["generate", *sys.argv[2:]]))
