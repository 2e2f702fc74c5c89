"""The attention backend switch: SDPA on CPU, refusals for unknown or missing backends."""

import pytest
import torch

import humo.attention as attn


def test_backend_switch_and_the_sdpa_path_is_plain_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 8, generator=g) for _ in range(3))
    weights = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / 8**0.5, dim=-1)
    expected = torch.einsum("bhqk,bkhd->bqhd", weights, v)
    try:
        attn.set_backend("sdpa")
        torch.testing.assert_close(attn.attention(q, k, v), expected, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="unknown attention backend"):
            attn.set_backend("xformers")
        if attn._flash_attn_func is None:
            with pytest.raises(RuntimeError, match="flash-attn is not installed"):
                attn.set_backend("flash")
        assert attn._BACKEND == "sdpa"  # a refused switch leaves the backend as it was
    finally:
        attn.set_backend("auto")
    torch.testing.assert_close(attn.attention(q, k, v), expected, rtol=1e-5, atol=1e-5)  # auto on CPU: SDPA
