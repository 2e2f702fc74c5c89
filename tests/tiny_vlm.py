"""A tiny random Qwen2.5-VL (transformers' `Qwen2_5_VLForConditionalGeneration`, the class HuMo's captions came
from) with its image processor and a character-level tokenizer, written as a model folder: what the captions
stage loads from ``--caption-model``. Built from a config, nothing downloaded; its captions are gibberish, the
mechanics (frames in, text out, deterministic) are real."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
SPECIAL += ["<|video_pad|>"]


def make_tiny_qwen25_vl(folder: Path, seed: int = 0) -> Path:
    """Write the model folder (config, safetensors, preprocessor and tokenizer files; about 0.1 MB)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for ch in [chr(c) for c in range(32, 127)] + ["\n"]:  # newline: the prompt's
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", extra_special_tokens=SPECIAL[1:]
    )
    ids = {t: vocab[t] for t in SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            tie_word_embeddings=True,
            bos_token_id=ids["<|im_end|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            initializer_range=0.5,  # large random weights: the output depends visibly on the frames
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            fullatt_block_indexes=[1],
            initializer_range=0.5,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|im_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # no special token after the prompt: the random model writes characters, not an early stop
        model.lm_head.weight[: len(SPECIAL)] = 0  # tied to the embeddings, which the prompt's specials still use
        model.lm_head.weight[vocab["\n"]] = 0
    folder = Path(folder)
    model.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
