"""HuMo training: one curriculum stage per run (see docs/training.md).

from humo.training.config import load_config
from humo.training.loop import train
summary = train(load_config("cfg.json", ["stage=2"]))
"""
