"""Block swap: run a DiT larger than the GPU's memory by streaming its blocks from pinned CPU memory.

`BlockSwap(dit, device, resident=N)` keeps the first N blocks (and everything outside the blocks: embeddings,
head, audio projector, mask head) on the device. The other blocks' weights live in pinned CPU memory; each is
copied to the device just before it runs and dropped right after, and the copy of the next streamed block starts
on a side CUDA stream while the current one computes, so the transfer hides behind the compute when a block's
compute takes longer than its copy (PCIe 4 at ~25 GB/s moves a 17B block, about 0.8 GB in bf16, in some 35 ms).

Peak DiT weight memory on the device: N blocks + 2 streamed ones (the running one and the next) + the rest.
On a CPU device the copies are plain and the schedule is the same, which is what the tests check.
"""

from __future__ import annotations

import torch


class BlockSwap:
    """Stream the DiT's blocks from index `resident` on (see the module's doc). Installs forward hooks on the
    blocks; `remove()` takes them off and leaves the streamed blocks on the CPU."""

    def __init__(self, dit, device: str | torch.device, resident: int):
        n = len(dit.blocks)
        if not 0 <= resident <= n:
            raise ValueError(f"resident blocks {resident}: must be from 0 to the DiT's {n}")
        self.device = torch.device(device)
        self.blocks = dit.blocks
        self.streamed = list(range(resident, n))
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.loaded: dict[int, object] = {}  # block index -> the copy's completion event (None on CPU)
        self.peak_loaded = 0
        streamed = set(self.streamed)
        for i, block in enumerate(dit.blocks):
            if i in streamed:
                block.to("cpu")
                if self.cuda:
                    for p in block.parameters():
                        p.data = p.data.pin_memory()
            else:
                block.to(self.device)
        self.host = {i: [p.data for p in dit.blocks[i].parameters()] for i in self.streamed}
        self.hooks = []
        for i in self.streamed:
            self.hooks.append(dit.blocks[i].register_forward_pre_hook(self._before(i)))
            self.hooks.append(dit.blocks[i].register_forward_hook(self._after(i)))

    def _load(self, i: int) -> None:
        """Start copying block i's weights to the device (on the side stream on CUDA)."""
        if i in self.loaded:
            return
        params = list(self.blocks[i].parameters())
        if self.cuda:
            with torch.cuda.stream(self.stream):
                for p, host in zip(params, self.host[i]):
                    p.data = host.to(self.device, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self.stream)
        else:
            for p, host in zip(params, self.host[i]):
                p.data = host.to(self.device, copy=True)
            event = None
        self.loaded[i] = event
        self.peak_loaded = max(self.peak_loaded, len(self.loaded))

    def _before(self, i: int):
        def hook(_module, _args):
            self._load(i)
            event = self.loaded[i]
            if event is not None:
                torch.cuda.current_stream(self.device).wait_event(event)
                for p in self.blocks[i].parameters():
                    p.data.record_stream(torch.cuda.current_stream(self.device))
            k = self.streamed.index(i)
            if k + 1 < len(self.streamed):  # the next streamed block's copy overlaps this block's compute
                self._load(self.streamed[k + 1])

        return hook

    def _after(self, i: int):
        def hook(_module, _args, _output):
            for p, host in zip(self.blocks[i].parameters(), self.host[i]):
                p.data = host  # the device copy is freed once the compute stream is done with it
            self.loaded.pop(i, None)

        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


def parse_offload(spec: str | None) -> int | None:
    """`--offload blocks:N` -> N (blocks kept resident); None -> None (no block swap)."""
    from humo.errors import HumoError

    if spec is None:
        return None
    kind, _, n = spec.partition(":")
    if kind != "blocks" or not n.isdigit():
        raise HumoError(f"--offload {spec}: expected blocks:N (N = DiT blocks kept on the GPU, e.g. blocks:10)")
    return int(n)
