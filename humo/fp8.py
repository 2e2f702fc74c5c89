"""fp8 weights for the DiT: float8_e4m3fn storage with one scale per output channel, upcast per layer.

The linear layers of the blocks (self-, text- and audio cross-attention, FFN) hold nearly all of the DiT's weights
(17B: 99%). `quantize_dit` stores each as float8_e4m3fn with a float32 scale per output row (absmax / 448, the
format's largest finite value), which halves the weights' memory against bf16. At compute time each layer
dequantizes its weight to the activations' dtype just before its matmul, so only one layer's weight is ever held
at full width. The embeddings, modulation, norms, head, audio projector and mask head stay in the model's dtype:
they are small, and the head and embeddings are the most sensitive to rounding.

Two ways to compute with them (`Fp8Linear.matmul`, chosen by `choose_matmul`):
- ``upcast``: the weight is dequantized to the activations' dtype just before an ordinary matmul. Any device; the
  memory saving without a speed gain.
- ``scaled``: the activations are quantized too, one scale per token row (absmax / 448), and the product runs as a
  scaled fp8 matmul (`torch._scaled_mm` with a row scale for the activations and a column scale for the weight),
  whose fp8 tensor cores run at twice the bf16 rate on Ada and Hopper GPUs (compute capability 8.9 and above). The
  activation rounding adds error beside the weights': `humo bench fp8` measures both paths.

A file saved from a quantized model keeps the fp8 tensors and adds `<layer>.weight_scale` keys; `load_dit` rebuilds
the fp8 layers from them. `humo bench fp8` measures the output error against bf16 on the full-width layouts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
SCALE_SUFFIX = ".weight_scale"


MATMULS = ("auto", "upcast", "scaled")


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (float8_e4m3fn [out, in], float32 scale [out]) with weight ~ q * scale[:, None]."""
    return quantize_rows(weight.detach())


# Rows quantized at a time: the float32 transient of `quantize_rows` is at most this many elements (16 MiB).
CHUNK_ELEMENTS = 1 << 22


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [rows, n] -> (float8_e4m3fn [rows, n], float32 scale [rows]) with x ~ q * scale[:, None], each row scaled
    so that its largest magnitude maps to 448.

    Memory: the row maxima are a reduction in x's own dtype (exact: the maximum is one of the values), and the
    rows are scaled in float32 a chunk of `CHUNK_ELEMENTS` at a time, in place, straight into the fp8 result, so
    the transient beyond that one-byte copy is one chunk (not float32 copies of the whole activation)."""
    scale = (torch.linalg.vector_norm(x, ord=float("inf"), dim=1).float() / FP8_MAX).clamp_min(
        torch.finfo(torch.float32).tiny
    )
    q = torch.empty(x.shape, dtype=FP8, device=x.device)
    rows = max(1, CHUNK_ELEMENTS // max(1, x.shape[1]))
    for i in range(0, x.shape[0], rows):
        chunk = x[i : i + rows].to(torch.float32, copy=True)
        chunk.div_(scale[i : i + rows, None]).clamp_(-FP8_MAX, FP8_MAX)
        q[i : i + rows] = chunk
    return q, scale


def scaled_matmul_supported(device: torch.device | str) -> bool:
    """Whether `device` has fp8 tensor cores for scaled matmuls: CUDA compute capability 8.9 (Ada) or above."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 9)


def choose_matmul(requested: str, device: torch.device | str) -> str:
    """``auto`` -> ``scaled`` where the device has fp8 tensor cores, ``upcast`` elsewhere; the others as given
    (``scaled`` on a CPU runs torch's reference kernel: for checking, not speed). ``scaled`` on a CUDA GPU without
    fp8 tensor cores (compute capability below 8.9) is a one-line error here, before any model loads: its first
    matmul would fail."""
    from humo.errors import HumoError

    if requested not in MATMULS:
        raise HumoError(f"--fp8-matmul {requested}: unknown (choose from: {', '.join(MATMULS)})")
    if requested == "auto":
        return "scaled" if scaled_matmul_supported(device) else "upcast"
    dev = torch.device(device)
    if requested == "scaled" and dev.type == "cuda" and not scaled_matmul_supported(dev):
        where = (
            "no CUDA device"
            if not torch.cuda.is_available()
            else ("compute capability {}.{}".format(*torch.cuda.get_device_capability(dev)))
        )
        raise HumoError(
            f"--fp8-matmul scaled: {dev} has no fp8 tensor cores ({where}; they need 8.9, Ada or Hopper); "
            "use --fp8-matmul upcast or auto"
        )
    return requested


class Fp8Linear(nn.Module):
    """A Linear whose weight is stored in fp8 with a per-output-channel scale (inference only)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.matmul = "upcast"  # or "scaled" (`set_matmul`)
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.weight_scale = nn.Parameter(scale.float(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Fp8Linear:
        q, scale = quantize_weight(linear.weight)
        return cls(q, scale, linear.bias)

    @classmethod
    def empty(cls, linear: nn.Linear) -> Fp8Linear:
        """An fp8 layer of `linear`'s shape with placeholder values, for load_state_dict(assign=True)."""
        out_f, in_f = linear.weight.shape
        dev = linear.weight.device
        bias = None if linear.bias is None else torch.empty(out_f, dtype=linear.bias.dtype, device=dev)
        return cls(torch.empty(out_f, in_f, dtype=FP8, device=dev), torch.empty(out_f, device=dev), bias)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale[:, None]).to(dtype)

    def scaled_for(self, dtype: torch.dtype, cuda: bool) -> bool:
        """Whether activations of `dtype` (on CUDA or not) run the scaled fp8 matmul. The fp8 GEMM kernels want both
        sizes in multiples of 16; CUDA's row-wise scaled kernels write bf16 only, so there they serve half-precision
        activations, and float32 ones take the upcast path rather than lose their precision to a bf16 output."""
        half = dtype in (torch.bfloat16, torch.float16)
        return (
            self.matmul == "scaled"
            and (half or not cuda)
            and self.in_features % 16 == 0
            and self.out_features % 16 == 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] in x's dtype."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.scaled_for(x.dtype, x.is_cuda):
            rows = x.reshape(-1, self.in_features)
            xq, x_scale = quantize_rows(rows)
            # the bias is added after, in x's dtype
            out_dtype = torch.bfloat16 if x.is_cuda else x.dtype
            out = torch._scaled_mm(
                xq,
                self.weight.t(),  # [in, out], column-major as the kernel wants
                scale_a=x_scale[:, None],
                scale_b=self.weight_scale[None, :],
                out_dtype=out_dtype,
            ).to(x.dtype)
            if bias is not None:
                out = out + bias
            return out.reshape(*x.shape[:-1], self.out_features)
        return F.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 per-channel, "
            f"{self.matmul} matmul"
        )


def set_matmul(dit, mode: str) -> int:
    """Every fp8 layer of the DiT computes with `mode` (``upcast`` or ``scaled``) -> how many layers."""
    if mode not in ("upcast", "scaled"):
        raise ValueError(f"fp8 matmul {mode!r}: upcast or scaled")
    layers = [m for m in dit.modules() if isinstance(m, Fp8Linear)]
    for m in layers:
        m.matmul = mode
    return len(layers)


def _block_linears(dit) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every Linear (or Fp8Linear) inside the DiT's blocks."""
    found = []
    for block in dit.blocks:
        for parent in block.modules():
            for name, child in parent.named_children():
                if isinstance(child, (nn.Linear, Fp8Linear)):
                    found.append((parent, name, child))
    return found


def quantize_dit(dit) -> int:
    """Replace every Linear in the DiT's blocks by an Fp8Linear, in place -> how many were replaced. The
    quantization runs where the weights are (quantize on the CPU before moving a large model to the GPU)."""
    n = 0
    for parent, name, layer in _block_linears(dit):
        if isinstance(layer, nn.Linear):
            setattr(parent, name, Fp8Linear.from_linear(layer))
            n += 1
    dit.requires_grad_(False)
    return n


def prepare_fp8_layers(dit, state_dict: dict) -> int:
    """Before loading an fp8 file: make the layers whose weights the file stores in fp8 (those with a
    `weight_scale` key) fp8 layers, so that the state dict loads onto them -> how many."""
    stored = {k[: -len(SCALE_SUFFIX)] for k in state_dict if k.endswith(SCALE_SUFFIX)}
    n = 0
    for block_index, block in enumerate(dit.blocks):
        for parent_name, parent in block.named_modules():
            for name, child in parent.named_children():
                path = ".".join(p for p in (f"blocks.{block_index}", parent_name, name) if p)
                if path in stored and isinstance(child, nn.Linear):
                    setattr(parent, name, Fp8Linear.empty(child))
                    n += 1
    return n


def is_fp8_state_dict(state_dict: dict) -> bool:
    return any(k.endswith(SCALE_SUFFIX) for k in state_dict)


def weight_bytes(dit) -> int:
    """Bytes of the DiT's parameters as stored (fp8 layers at one byte a weight)."""
    return sum(p.numel() * p.element_size() for p in dit.parameters())
