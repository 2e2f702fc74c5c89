"""The umT5 text encoder through transformers' `UMT5EncoderModel`.

What lives here (the network is transformers'):
- our key mapping from the official Wan2.1 `models_t5_umt5-xxl-enc-bf16.pth` layout (`token_embedding`,
  `blocks.N.attn.{q,k,v,o}`, `blocks.N.ffn.{gate.0,fc1,fc2}`, per-layer `blocks.N.pos_embedding.embedding`, ...)
  to transformers' names, loaded strictly;
- Wan's prompt handling: clean the text, tokenize to exactly `text_len` tokens (eos appended, padded, truncated),
  encode with the padding masked out, and ZERO the embeddings beyond each prompt's length;
- a toy encoder for the proving ground: a tiny seeded UMT5 with a word-level tokenizer built in code.

Output: ``[B, text_len, dim]`` (text_len 512 and dim 4096 for umT5-XXL).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from humo.conditions.vae import load_state_dict_file
from humo.errors import HumoError, check_keys, first_line

# Wan2.1's default negative prompt (its shared config), used as the default negative for guidance.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

WAN_TEXT_LEN = 512

# `UMT5Config` keyword arguments of the umT5-XXL encoder Wan2.1 uses (64 heads of 64, gated tanh-GELU FFN,
# 32 relative-position buckets per layer up to distance 128).
UMT5_XXL_CONFIG: dict[str, Any] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_heads": 64,
    "num_layers": 24,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

# Extra `config.json` entry recording the token length the encoder pads/truncates to.
_TEXT_LEN_KEY = "humo_text_len"
_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in umT5


# ----------------------------------------------------------------------------------------------------------------
# Official <-> transformers key mapping
# ----------------------------------------------------------------------------------------------------------------

_BLOCK_TO_OFFICIAL = {
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    # umT5: every layer has its own relative position bias (Wan: shared_pos=False).
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    # Wan's FFN is fc2(fc1(x) * gelu(gate(x))); transformers' is wo(gelu(wi_0(x)) * wi_1(x)).
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def hf_key_to_official(key: str) -> str:
    """The official Wan2.1 T5 name of one `UMT5EncoderModel` state-dict key."""
    if key in ("shared.weight", "encoder.embed_tokens.weight"):  # tied: one official tensor
        return "token_embedding.weight"
    if key == "encoder.final_layer_norm.weight":
        return "norm.weight"
    m = re.fullmatch(r"encoder\.block\.(\d+)\.(.+)", key)
    if m and m.group(2) in _BLOCK_TO_OFFICIAL:
        return f"blocks.{m.group(1)}.{_BLOCK_TO_OFFICIAL[m.group(2)]}"
    raise KeyError(f"unknown umT5 key {key}")


def map_official_state_dict(
    official: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str
) -> dict[str, torch.Tensor]:
    """Rename an official-layout umT5 state dict to `model`'s names; HumoError listing any mismatch."""
    expected = model.state_dict()
    names = {k: hf_key_to_official(k) for k in expected}
    check_keys(
        f"text encoder weights {source}: do not match the umT5 encoder layout",
        official,
        {off: expected[k] for k, off in names.items()},
    )
    return {k: official[off] for k, off in names.items()}


# ----------------------------------------------------------------------------------------------------------------
# Text cleaning and tokenizers
# ----------------------------------------------------------------------------------------------------------------


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning: fix mojibake (if `ftfy` is installed), unescape HTML twice, collapse whitespace."""
    try:
        import ftfy  # optional: Wan uses it; without it only broken-encoding text differs

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _check_tokenizer_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise HumoError(f"tokenizer folder {folder}: not a directory")
    if not (folder / "tokenizer.json").is_file() and not (folder / "spiece.model").is_file():
        raise HumoError(f"tokenizer folder {folder}: incomplete, no tokenizer.json or spiece.model")


def load_tokenizer(folder: str | os.PathLike):
    """`AutoTokenizer.from_pretrained(folder)` with a one-line HumoError for missing or unreadable folders."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    _check_tokenizer_dir(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HumoError(f"tokenizer folder {folder}: cannot load ({type(e).__name__}: {first_line(e)})") from None


def build_word_tokenizer(vocabulary: list[str], text_len: int):
    """A word-level tokenizer over `vocabulary` (lowercased; punctuation split off), umT5's special-token ids.

    ids: ``<pad>`` 0, ``</s>`` 1 (appended to every prompt), ``<unk>`` 2, then ASCII punctuation, then the words in
    first-seen order. Returns a `PreTrainedTokenizerFast`.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    vocab: dict[str, int] = {}
    for token in (*_SPECIAL_TOKENS, *string.punctuation):
        vocab.setdefault(token, len(vocab))
    for entry in vocabulary:
        # Entries go through the same normalisation and splitting as prompts, so "Hello," adds "hello" and ",".
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(str(entry))):
            vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>", model_max_length=text_len
    )


# ----------------------------------------------------------------------------------------------------------------
# The encoder
# ----------------------------------------------------------------------------------------------------------------


def _umt5_config(overrides: Mapping[str, Any] | None):
    from transformers import UMT5Config

    return UMT5Config(**{**UMT5_XXL_CONFIG, **(dict(overrides) if overrides else {})})


class TextEncoder:
    """umT5 encoder + tokenizer producing Wan's text context ``[B, text_len, dim]`` (zero beyond each prompt)."""

    def __init__(self, model: torch.nn.Module, tokenizer, text_len: int = WAN_TEXT_LEN):
        if int(text_len) < 1:
            raise HumoError(f"text_len {text_len}: must be positive")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = int(text_len)

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- construction ----------------------------------------------------------------------------------------

    @classmethod
    def from_official(
        cls,
        pth: str | os.PathLike,
        tokenizer_dir: str | os.PathLike,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        config: Mapping[str, Any] | None = None,
        text_len: int = WAN_TEXT_LEN,
    ) -> TextEncoder:
        """Load `models_t5_umt5-xxl-enc-bf16.pth` (official layout; `.safetensors` with the same keys works too).

        `config` overrides entries of `UMT5_XXL_CONFIG` (tiny test models use the same path).
        """
        from transformers import UMT5EncoderModel

        tokenizer = load_tokenizer(tokenizer_dir)  # fail on a bad tokenizer before reading gigabytes
        cfg = _umt5_config(config)
        official = load_state_dict_file(pth)
        with torch.device("meta"):
            model = UMT5EncoderModel(cfg)
        state = map_official_state_dict(official, model, str(pth))
        # Convert each official tensor once, so the tied embedding stays one tensor.
        converted: dict[int, torch.Tensor] = {}
        for k, v in state.items():
            if id(v) not in converted:
                converted[id(v)] = v.to(device=device, dtype=dtype)
            state[k] = converted[id(v)]
        model.load_state_dict(state, strict=True, assign=True)
        model.encoder.embed_tokens = model.shared
        return cls(model, tokenizer, text_len)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        tokenizer_dir: str | os.PathLike | None = None,
        text_len: int | None = None,
    ) -> TextEncoder:
        """Load a transformers-format folder (`config.json` + weights), its tokenizer from `tokenizer_dir` or the
        same folder. `text_len` defaults to the one saved by `save_pretrained`, else 512."""
        from transformers import UMT5EncoderModel

        folder = Path(folder)
        if not folder.is_dir():
            raise HumoError(f"text encoder folder {folder}: not a directory")
        if not (folder / "config.json").is_file():
            raise HumoError(f"text encoder folder {folder}: incomplete, config.json is missing")
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError):
                raise HumoError(f"text encoder folder {folder}: model.safetensors.index.json is not valid") from None
            absent = [s for s in shards if not (folder / s).is_file()]
            if absent:
                raise HumoError(f"text encoder folder {folder}: incomplete, missing shards {', '.join(absent)}")
        elif not (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").is_file():
            raise HumoError(f"text encoder folder {folder}: incomplete, no model.safetensors")
        tokenizer = load_tokenizer(tokenizer_dir if tokenizer_dir is not None else folder)
        try:
            model = UMT5EncoderModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise HumoError(
                f"text encoder folder {folder}: cannot load ({type(e).__name__}: {first_line(e)})"
            ) from None
        if text_len is None:
            text_len = int(getattr(model.config, _TEXT_LEN_KEY, None) or WAN_TEXT_LEN)
        return cls(model.to(device), tokenizer, text_len)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write model (safetensors) and tokenizer into one folder; each file appears complete or not at all."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".text-save.", dir=folder))
        try:
            setattr(self.model.config, _TEXT_LEN_KEY, self.text_len)
            self.model.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            for f in sorted(tmp.iterdir()):
                os.replace(f, folder / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def toy(
        cls,
        vocabulary: list[str],
        text_len: int = 32,
        dim: int = 128,
        seed: int = 0,
        num_layers: int = 2,
        num_heads: int = 4,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> TextEncoder:
        """A tiny random umT5 (`num_layers` x `dim`) over a word-level tokenizer of `vocabulary`.

        Deterministic: the same vocabulary and seed give the same tokenizer and weights.
        """
        from transformers import UMT5EncoderModel

        if dim % num_heads:
            raise HumoError(f"toy text encoder dim {dim}: must be divisible by {num_heads} heads")
        tokenizer = build_word_tokenizer(vocabulary, text_len)
        cfg = _umt5_config(
            {
                "vocab_size": len(tokenizer),
                "d_model": dim,
                "d_kv": dim // num_heads,
                "d_ff": 2 * dim,
                "num_heads": num_heads,
                "num_layers": num_layers,
                _TEXT_LEN_KEY: text_len,
            }
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = UMT5EncoderModel(cfg)
        return cls(model.to(device=device, dtype=dtype), tokenizer, text_len)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the official Wan2.1 T5 names (the tied embedding once)."""
        return {hf_key_to_official(k): v for k, v in self.model.state_dict().items()}

    # -- encoding --------------------------------------------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cleaned prompts -> ``(ids [B, text_len], mask [B, text_len])``: eos appended, padded, truncated."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise HumoError("prompts: expected a non-empty list of strings")
        batch = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self.text_len,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return batch["input_ids"], batch["attention_mask"]

    def token_count(self, prompt: str) -> int:
        """Tokens of `prompt` (eos included) before truncation to `text_len`: more than `text_len` means text is cut."""
        return len(self.tokenizer(clean_prompt(prompt), add_special_tokens=True)["input_ids"])

    @torch.no_grad()
    def encode(self, prompts: list[str], return_lengths: bool = False):
        """Prompts -> ``[B, text_len, dim]`` in the model dtype, zero beyond each prompt's token length.

        With `return_lengths`, also the token lengths ``[B]`` (eos included).
        """
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Wan keeps only the first `length` embeddings and pads the context with zeros.
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        if return_lengths:
            return hidden, mask.sum(dim=1)
        return hidden
