"""HuMo's audio condition: Whisper encoder hidden states -> five layer groups -> 25 fps -> per-latent-frame windows.

The feature computation follows the HuMo release (``humo/utils/audio_processor_whisper.py`` in
Phantom-video/HuMo, ``AudioProcessor.preprocess`` / ``audio_emb_enc`` / ``get_audio_emb_window``). Facts relied on:

- mono 16 kHz samples; Whisper log-mel of each 30 s (480000-sample) chunk with ``WhisperFeatureExtractor``
  (the last chunk zero-padded to 30 s by the extractor); the encoder runs on each 3000-frame mel chunk with
  ``output_hidden_states=True`` (33 states for large-v3: the embeddings plus every layer's output, the last one
  after the final LayerNorm); the states are stacked as ``[1, T50, 33, C]`` and trimmed to
  ``2 * (num_samples // 640)`` frames at 50 Hz;
- groups: ``mean(states[0:8])``, ``[8:16]``, ``[16:24]``, ``[24:32]`` and ``states[32]`` alone, each resampled
  from 50 Hz to 25 fps with ``F.interpolate(mode="linear", align_corners=True)`` to
  ``int(T50 / 50.0 * 25)`` frames (note: float rounding makes this ``num_samples // 640 - 1`` for some lengths,
  e.g. 58 frames at 50 Hz give 28, not 29; we reproduce it because ``--frames -1`` takes its length from it);
- windows: ``audio_shift = 2``; latent frame 0 = 3 zero frames + video frames ``[-2, +2]``; latent frame i >= 1 =
  video frames ``[1 + 4(i-1) - 2, 1 + 4i + 2)`` = ``[4i-5 .. 4i+2]``; indices outside ``[0, T)`` are zero
  frames; one zero window is appended per reference latent frame; the number of latent frames is
  ``1 + (frames - 1) // 4`` with ``frames`` rounded down to ``4k + 1``.

Long audio. The release encodes back-to-back 30 s chunks, so the frames on either side of every 30 s boundary
come from different encoder passes, each seeing only one side of the boundary and absolute positions restarting
at 0: a seam. We keep the release computation exactly for audio up to one window (30 s), and for longer audio
run the encoder on overlapping full windows (hop 2/3 of a window, so 10 s of overlap for 30 s windows; the last
window is placed to end at the end of the audio so no window is padded with silence) and blend them with weights
that rise linearly from 0 at a window's inner edges (``min(position, last - position)``, no taper at the ends of
the audio). Every output frame is then a convex combination of encoder outputs, weight 0 where a window starts
or stops contributing, so the features are continuous across windows (no seam); frames covered by a single
window (the middle third of each) are exactly that window's encoder output, i.e. the features of the 30 s clip
around them, which is what the tests check at the release's 30 s boundary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from humo.constants import AUDIO_SHIFT, NUM_GROUPS, SAMPLE_RATE, VIDEO_FPS, WINDOW, latent_frames, round_down_frames
from humo.errors import HumoError, atomic_path, check_keys, first_line

HOP_LENGTH = 160  # mel hop in samples; the encoder's conv2 has stride 2, so one encoder frame = 320 samples (50 Hz)
SAMPLES_PER_ENCODER_FRAME = 2 * HOP_LENGTH
SAMPLES_PER_VIDEO_FRAME_25 = 640  # the release's trim unit: 16000 / 25
FEATURE_RATE = 50  # encoder frames per second

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
WEIGHTS_BIN = "pytorch_model.bin"
# Where encoder weights sit in the folders we accept: WhisperForConditionalGeneration (the official
# openai/whisper-* layout), WhisperModel, and a bare WhisperEncoder.
ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")


def num_video_frames(num_samples: int, fps: int = VIDEO_FPS) -> int:
    """Number of 25 fps feature frames that `AudioEncoder.features` returns for `num_samples` at 16 kHz.

    ``int(T50 / 50.0 * fps)`` with ``T50 = 2 * (num_samples // 640)``, the release's expression including its
    float rounding (58 frames at 50 Hz -> 28).
    """
    t50 = 2 * (num_samples // SAMPLES_PER_VIDEO_FRAME_25)
    return int(t50 / float(FEATURE_RATE) * fps)


def frames_for_audio(num_samples: int, fps: int = VIDEO_FPS) -> int:
    """Video length for ``--frames -1``: the audio's frame count (`num_video_frames`) rounded down to ``4k + 1``."""
    n = num_video_frames(num_samples, fps)
    if n < 1:
        raise HumoError(f"audio of {num_samples / SAMPLE_RATE:.3f} s is too short for one video frame")
    return round_down_frames(n)


def num_latent_frames(num_video_frames_: int) -> int:
    """Latent frames of a ``4k + 1``-frame video (Wan VAE: 4x temporal compression, first frame alone)."""
    return latent_frames(num_video_frames_)


def window_indices(num_latent: int) -> torch.Tensor:
    """Video-frame index of each slot of each latent frame's window -> LongTensor ``[num_latent, 8]``.

    -1 marks the 3 leading zero slots of latent frame 0; other indices may fall outside the audio (< 0 or >= T)
    and are zero frames too. Latent 0: ``[-1, -1, -1, -2, -1, 0, 1, 2]`` (3 zeros, then frames -2..2);
    latent i >= 1: ``4i-5 .. 4i+2``.
    """
    rows = []
    for i in range(num_latent):
        if i == 0:
            # The first latent frame encodes one video frame; the release centres 5 frames on it and pads the
            # window to 8 with 3 leading zero frames.
            rows.append([None, None, None] + list(range(-AUDIO_SHIFT, AUDIO_SHIFT + 1)))
        else:
            # Latent i covers video frames 4i-3 .. 4i; widened by audio_shift on both sides -> 8 frames.
            st = 1 + 4 * (i - 1) - AUDIO_SHIFT
            rows.append(list(range(st, 1 + 4 * i + AUDIO_SHIFT)))
    # Encode "forced zero" as a sentinel far below any valid index.
    return torch.tensor([[-(10**9) if j is None else j for j in r] for r in rows], dtype=torch.long).reshape(
        num_latent, WINDOW
    )


def audio_windows(frame_feats: torch.Tensor, num_latent_frames: int, start: int = 0) -> torch.Tensor:
    """Group per-video-frame features into per-latent-frame windows.

    frame_feats: ``[T_video, 5, C]`` (from `AudioEncoder.features`). Returns ``[num_latent_frames, 8, 5, C]``:
    window i holds the features of the video frames in `window_indices`, counted from video frame `start` (a
    segment of a long video starts mid-audio), zeros where the frame does not exist. The clean frames' windows
    (zeros for references) are `conditioning.with_clean_windows`'.
    """
    if frame_feats.ndim != 3:
        raise ValueError(f"frame_feats must be [T, groups, C], got {tuple(frame_feats.shape)}")
    t = frame_feats.shape[0]
    idx = window_indices(num_latent_frames) + start  # [F, 8]; the forced-zero sentinel stays far below 0
    valid = (idx >= 0) & (idx < t)
    # Gather from the features with one zero row appended; invalid slots point at that row.
    padded = torch.cat([frame_feats, frame_feats.new_zeros(1, *frame_feats.shape[1:])], dim=0)
    gather = torch.where(valid, idx, torch.full_like(idx, t)).to(frame_feats.device)
    return padded[gather]  # [F, 8, 5, C]


def _interpolate_fps(x: torch.Tensor, out_len: int) -> torch.Tensor:
    """``[1, T, C]`` at 50 Hz -> ``[1, out_len, C]``: linear, align_corners=True, as the release does."""
    return F.interpolate(x.transpose(1, 2), size=out_len, mode="linear", align_corners=True).transpose(1, 2)


def window_starts(total_frames: int, window: int) -> list[int]:
    """Start frames (50 Hz) of the overlapping encoder windows covering ``[0, total_frames)``.

    One window from 0 when the audio fits; else hops of ``2 * window // 3`` with the last window ending exactly at
    `total_frames`.
    """
    if total_frames <= window:
        return [0]
    hop = max(1, (2 * window) // 3)
    starts = [0]
    while starts[-1] + window < total_frames:
        nxt = starts[-1] + hop
        if nxt + window >= total_frames:
            nxt = total_frames - window
        starts.append(nxt)
    return starts


def blend_weights(num_windows: int, index: int, window: int) -> torch.Tensor:
    """Weight ``[window]`` of each position of window `index` of `num_windows` in the blend.

    Linear ramps from 0 at the window's inner edges (an edge that is also an end of the audio is not tapered), so
    contributions fade in and out continuously. A lone window gets weight 1 everywhere.
    """
    pos = torch.arange(window, dtype=torch.float64)
    w = torch.full((window,), float("inf"), dtype=torch.float64)
    if index > 0:
        w = torch.minimum(w, pos)
    if index < num_windows - 1:
        w = torch.minimum(w, (window - 1) - pos)
    return torch.where(torch.isinf(w), torch.ones_like(w), w)


class AudioEncoder:
    """Whisper encoder + feature extractor computing HuMo's audio features.

    Wraps a transformers ``WhisperEncoder`` and ``WhisperFeatureExtractor`` (any mel count: 80 for most Whisper
    sizes, 128 for large-v3). The number of encoder layers must be divisible by 4 (groups of ``layers / 4``
    states, then the final state alone: 8/8/8/8/1 for large-v3's 32 layers).
    """

    def __init__(self, encoder, feature_extractor, *, name: str = "whisper"):
        cfg = encoder.config
        if cfg.encoder_layers % 4 != 0:
            raise HumoError(f"audio encoder {name}: {cfg.encoder_layers} layers, need a multiple of 4 for 5 groups")
        fe = feature_extractor
        if fe.feature_size != cfg.num_mel_bins:
            raise HumoError(
                f"audio encoder {name}: feature extractor has {fe.feature_size} mel bins, encoder {cfg.num_mel_bins}"
            )
        if fe.sampling_rate != SAMPLE_RATE or fe.hop_length != HOP_LENGTH:
            raise HumoError(
                f"audio encoder {name}: feature extractor must be {SAMPLE_RATE} Hz with hop {HOP_LENGTH}, "
                f"got {fe.sampling_rate} Hz hop {fe.hop_length}"
            )
        if fe.nb_max_frames != 2 * cfg.max_source_positions:
            raise HumoError(
                f"audio encoder {name}: feature extractor window is {fe.nb_max_frames} mel frames but the encoder "
                f"takes {2 * cfg.max_source_positions}"
            )
        self.encoder = encoder.eval().requires_grad_(False)
        self.feature_extractor = fe
        self.name = name

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def num_layers(self) -> int:
        return int(self.encoder.config.encoder_layers)

    @property
    def dim(self) -> int:
        """Width C of each feature (1280 for large-v3)."""
        return int(self.encoder.config.d_model)

    @property
    def window_frames(self) -> int:
        """Encoder frames (50 Hz) in one window: 1500 = 30 s for the released Whisper."""
        return int(self.encoder.config.max_source_positions)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> AudioEncoder:
        self.encoder.to(device=device, dtype=dtype)
        return self

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def toy_config(
        cls,
        *,
        num_layers: int = 4,
        d_model: int = 64,
        num_mel_bins: int = 32,
        heads: int = 4,
        chunk_seconds: int = 30,
    ):
        """A tiny ``WhisperConfig`` (decoder fields only so the config is valid; the decoder is never built)."""
        from transformers import WhisperConfig

        return WhisperConfig(
            vocab_size=64,
            num_mel_bins=num_mel_bins,
            encoder_layers=num_layers,
            encoder_attention_heads=heads,
            encoder_ffn_dim=2 * d_model,
            decoder_layers=1,
            decoder_attention_heads=heads,
            decoder_ffn_dim=2 * d_model,
            d_model=d_model,
            max_source_positions=chunk_seconds * FEATURE_RATE,
            max_target_positions=16,
            # Token ids must lie below vocab_size for a small vocabulary to validate.
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=2,
            suppress_tokens=None,
            begin_suppress_tokens=None,
        )

    @classmethod
    def toy(
        cls,
        seed: int = 0,
        *,
        num_layers: int = 4,
        d_model: int = 64,
        num_mel_bins: int = 32,
        heads: int = 4,
        chunk_seconds: int = 30,
    ) -> AudioEncoder:
        """A tiny random Whisper encoder (deterministic for `seed`) with a matching feature extractor.

        `chunk_seconds` sets the encoder window (``max_source_positions = 50 * chunk_seconds``); a short window
        makes long-audio tests fast.

        Unlike a plain random Whisper, its features follow the sound, as a trained Whisper's do: its position
        embedding is zero and its two input convolutions have 10x the initial weights. In a plain random Whisper
        the fixed unit-size sinusoid of the position embedding outweighs the convolutions' output (weights of std
        0.02) and the hidden states barely depend on the audio: on 12 proving-ground clips 0.01% of the features'
        mean square differed between clips at the same frame, so no DiT could learn lip sync from them. The toy's
        share is about 40% in every group of layers (`tests/test_audio_features.py` checks it).
        """
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = cls.toy_config(
            num_layers=num_layers, d_model=d_model, num_mel_bins=num_mel_bins, heads=heads, chunk_seconds=chunk_seconds
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            enc = WhisperEncoder(cfg)
        with torch.no_grad():
            enc.embed_positions.weight.zero_()
            enc.conv1.weight.mul_(10.0)
            enc.conv2.weight.mul_(10.0)
        fe = WhisperFeatureExtractor(feature_size=num_mel_bins, chunk_length=chunk_seconds)
        return cls(enc, fe, name=f"toy(seed={seed})")

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> AudioEncoder:
        """Load the encoder of a local Hugging Face Whisper folder (e.g. ``whisper-large-v3/``).

        Needs ``config.json``, ``preprocessor_config.json`` and weights (``model.safetensors``, a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin``). Only the encoder's tensors are read
        (keys under ``model.encoder.``, ``encoder.`` or bare), strictly: missing or unexpected encoder keys are a
        HumoError listing them. The release runs Whisper in float32, the default here.
        """
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        root = Path(folder)
        if not root.is_dir():
            raise HumoError(f"whisper folder {root}: not found or not a directory")
        for needed in (CONFIG_FILE, PREPROCESSOR_FILE):
            if not (root / needed).is_file():
                raise HumoError(f"whisper folder {root}: incomplete, {needed} is missing")
        try:
            cfg = WhisperConfig.from_pretrained(str(root))
        except Exception as e:  # malformed JSON or a non-Whisper config
            raise HumoError(f"whisper folder {root}: cannot read {CONFIG_FILE} ({first_line(e)})") from None
        if getattr(cfg, "model_type", None) != "whisper":
            raise HumoError(f"whisper folder {root}: {CONFIG_FILE} is not a Whisper config")
        try:
            fe = WhisperFeatureExtractor.from_pretrained(str(root))
        except Exception as e:
            raise HumoError(f"whisper folder {root}: cannot read {PREPROCESSOR_FILE} ({first_line(e)})") from None

        with torch.device("meta"):
            enc = WhisperEncoder(cfg)
        expected = set(enc.state_dict().keys())
        state = _load_encoder_state(root, expected)
        enc.load_state_dict(state, strict=True, assign=True)
        enc.to(device=device, dtype=dtype)
        return cls(enc, fe, name=str(root))

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write a Hugging Face Whisper folder (config, preprocessor config, ``model.safetensors`` with the
        encoder under ``model.encoder.`` as in openai/whisper-*) that `from_pretrained` reads back."""
        from safetensors.torch import save_file

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        cfg_dict = self.encoder.config.to_dict()
        with atomic_path(root / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(cfg_dict, indent=2, sort_keys=True))
        fe_dict = self.feature_extractor.to_dict()
        fe_dict.pop("mel_filters", None)  # recomputed from the other fields on load
        with atomic_path(root / PREPROCESSOR_FILE) as tmp:
            tmp.write_text(json.dumps(fe_dict, indent=2, sort_keys=True, default=_json_default))
        state = {f"model.encoder.{k}": v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
        with atomic_path(root / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})

    # -------------------------------------------------------------------------------------------- features
    def _encode_window(self, segment: np.ndarray) -> torch.Tensor:
        """One window of samples (at most a window long; shorter is zero-padded by the extractor, as in the
        release) -> grouped hidden states ``[window_frames, 5, C]`` float32."""
        mel = self.feature_extractor(segment, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            out = self.encoder(mel.to(device=self.device, dtype=self.dtype), output_hidden_states=True)
            states = torch.stack([h.float() for h in out.hidden_states], dim=2)  # [1, T, L+1, C] as the release
            return self.group_states(states)[0]

    def group_states(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, T, L+1, C]`` stacked hidden states -> ``[B, T, 5, C]``: means of four consecutive groups of
        ``L/4`` states (embeddings included in the first), then the final state alone."""
        n = self.num_layers // 4
        groups = [states[:, :, k * n : (k + 1) * n].mean(dim=2) for k in range(4)]
        groups.append(states[:, :, 4 * n])
        return torch.stack(groups, dim=2)

    def features_50hz(self, samples: np.ndarray | torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Mono 16 kHz samples ``[N]`` -> grouped Whisper states at 50 Hz ``[2 * (N // 640), 5, C]`` (float32, CPU).

        Up to one window (30 s): exactly the release (one zero-padded window). Longer: overlapping windows
        blended as described in the module docstring. `upto`: only the first `upto` rows are wanted; the windows
        that start at or after it are not encoded (each row depends only on the windows covering it, and a
        window's blend weight is 0 at its first row), so the rows returned are the same as the whole result's.
        """
        x = _as_samples(samples)
        n = x.shape[0]
        total = 2 * (n // SAMPLES_PER_VIDEO_FRAME_25)
        if total == 0:
            raise HumoError(
                f"audio of {n / SAMPLE_RATE:.3f} s is too short for Whisper features (need at least 0.04 s)"
            )
        win = self.window_frames
        win_samples = win * SAMPLES_PER_ENCODER_FRAME
        starts = window_starts(total, win)
        rows = total if upto is None else max(1, min(upto, total))
        if len(starts) == 1:
            return self._encode_window(x[:win_samples])[:rows].cpu()
        acc = torch.zeros(rows, NUM_GROUPS, self.dim, dtype=torch.float64)
        wsum = torch.zeros(rows, dtype=torch.float64)
        for k, a in enumerate(starts):
            if a >= rows:
                break
            s = a * SAMPLES_PER_ENCODER_FRAME
            g = self._encode_window(x[s : s + win_samples]).cpu().double()  # [win, 5, C]
            w = blend_weights(len(starts), k, win)
            m = min(win, rows - a)
            acc[a : a + m] += w[:m, None, None] * g[:m]
            wsum[a : a + m] += w[:m]
        return (acc / wsum[:, None, None]).float()

    def features(self, samples: np.ndarray | torch.Tensor, fps: int = VIDEO_FPS, frames: int | None = None):
        """Mono 16 kHz samples ``[N]`` -> one feature per video frame ``[num_video_frames(N), 5, C]`` (float32, CPU).

        `features_50hz` resampled to `fps` per group with linear interpolation (align_corners=True) as the release.
        `frames`: only the first `frames` video frames are wanted (a video shorter than its audio). They are the
        rows the whole audio would give, to float rounding (the release's interpolation spans the whole length),
        but only the encoder windows that reach them are run: a 2 s video of a 10-minute recording encodes one
        window, not twenty.
        """
        total = 2 * (_as_samples(samples).shape[0] // SAMPLES_PER_VIDEO_FRAME_25)
        out_len = int(total / float(FEATURE_RATE) * fps)
        if out_len < 1:
            raise HumoError(f"audio of {total / FEATURE_RATE:.3f} s is too short for one video frame")
        if frames is None or frames >= out_len or out_len == 1:
            g = self.features_50hz(samples)  # [T50, 5, C]
            per_group = [_interpolate_fps(g[None, :, j], out_len)[0] for j in range(NUM_GROUPS)]
            return torch.stack(per_group, dim=1)
        # The same sampling positions as _interpolate_fps over the whole length, for the first `frames` only.
        pos = torch.arange(frames, dtype=torch.float64) * ((total - 1) / (out_len - 1))
        lo = pos.floor().long().clamp(max=total - 1)
        hi = (lo + 1).clamp(max=total - 1)
        g = self.features_50hz(samples, upto=int(hi[-1]) + 1).double()
        frac = (pos - lo.double())[:, None, None]
        return (g[lo] * (1 - frac) + g[hi] * frac).float()


def _as_samples(samples: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"samples must be mono [N], got shape {x.shape}")
    return x


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _load_encoder_state(root: Path, expected: set[str]) -> dict[str, torch.Tensor]:
    """Read the encoder tensors of a Whisper folder, strictly, trying the known key prefixes."""
    from safetensors import safe_open

    # key -> loader; safetensors are opened lazily so only encoder tensors are read.
    files: dict[str, list[str]] = {}
    if (root / WEIGHTS_FILE).is_file():
        files[str(root / WEIGHTS_FILE)] = []
    elif (root / WEIGHTS_INDEX).is_file():
        try:
            weight_map = json.loads((root / WEIGHTS_INDEX).read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise HumoError(f"whisper folder {root}: malformed {WEIGHTS_INDEX} ({first_line(e)})") from None
        for shard in sorted(set(weight_map.values())):
            if not (root / shard).is_file():
                raise HumoError(f"whisper folder {root}: incomplete, shard {shard} is missing")
            files[str(root / shard)] = []
    elif (root / WEIGHTS_BIN).is_file():
        try:
            sd = torch.load(root / WEIGHTS_BIN, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            raise HumoError(f"whisper folder {root}: cannot read {WEIGHTS_BIN} ({first_line(e)})") from None
        return _pick_encoder(root, dict(sd), expected)
    else:
        raise HumoError(f"whisper folder {root}: incomplete, no {WEIGHTS_FILE}, {WEIGHTS_INDEX} or {WEIGHTS_BIN}")

    handles = {}
    keys: dict[str, str] = {}
    try:
        for f in files:
            handles[f] = safe_open(f, framework="pt", device="cpu")
            for k in handles[f].keys():
                keys[k] = f
    except Exception as e:
        raise HumoError(f"whisper folder {root}: cannot read weights ({first_line(e)})") from None
    prefix = _detect_prefix(root, keys.keys())
    chosen = {k[len(prefix) :]: k for k in keys if k.startswith(prefix) and _is_encoder_key(k[len(prefix) :], prefix)}
    _check_keys(root, set(chosen), expected)
    return {short: handles[keys[full]].get_tensor(full) for short, full in chosen.items()}


def _is_encoder_key(short: str, prefix: str) -> bool:
    # With the bare prefix every key must be an encoder key; anything else would be a decoder/head key.
    return prefix != "" or not short.startswith(("decoder.", "model.", "encoder.", "proj_out."))


def _detect_prefix(root: Path, keys) -> str:
    keys = set(keys)
    for prefix in ENCODER_PREFIXES:
        if f"{prefix}conv1.weight" in keys:
            return prefix
    raise HumoError(f"whisper folder {root}: no Whisper encoder weights found (no '*conv1.weight' key)")


def _pick_encoder(root: Path, sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    prefix = _detect_prefix(root, sd.keys())
    out = {
        k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and _is_encoder_key(k[len(prefix) :], prefix)
    }
    _check_keys(root, set(out), expected)
    return out


def _check_keys(root: Path, found: set[str], expected: set[str]) -> None:
    check_keys(f"whisper folder {root}: encoder key mismatch", dict.fromkeys(found), dict.fromkeys(expected))
