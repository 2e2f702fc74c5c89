"""Exponential moving average of the trainable weights (the weights that are exported)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn

from humo.errors import HumoError, check_keys


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * param`` after every optimiser step, in fp32.

    Only the trainable parameters are averaged (frozen ones never change, so their average is themselves).
    """

    def __init__(self, params: Mapping[str, nn.Parameter], decay: float):
        self.params = dict(params)
        self.decay = float(decay)
        self.shadow = {k: p.detach().float().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for k, p in self.params.items():
            self.shadow[k].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, sd: Mapping[str, torch.Tensor], source: str = "EMA state") -> None:
        check_keys(f"{source}: key mismatch", dict.fromkeys(sd), dict.fromkeys(self.shadow))
        for k, v in sd.items():
            if v.shape != self.shadow[k].shape:
                raise HumoError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(self.shadow[k].shape)}")
            self.shadow[k].copy_(v)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the EMA weights; its own weights come back afterwards."""
        with torch.no_grad():
            saved = {k: p.detach().clone() for k, p in self.params.items()}
            for k, p in self.params.items():
                p.copy_(self.shadow[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(saved[k])
