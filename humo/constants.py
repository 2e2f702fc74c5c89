"""The numbers the whole method shares, in one home: the audio the model hears, the video rate, Wan's latent
time layout (1 + 4k frames), the audio windows, and the null texts of guidance."""

from __future__ import annotations

SAMPLE_RATE = 16000  # Hz: what Whisper, and so the model, hears
VIDEO_FPS = 25  # frames per second of every generated and training video

# Wan's causal VAE keeps the first frame alone and folds each following 4 frames into one latent frame, so a
# 1 + 4k-frame video has 1 + k latent frames.
TEMPORAL_STRIDE = 4

# Video frames of the previous segment that start the next one of a long video (OmniHuman's choice: 5, i.e. two
# latent frames of Wan's VAE, the first alone and then four). The segment's new frames continue the same latent
# stream in fours, so a segment is a whole 1 + 4k-frame clip whose first two latent frames are known; training's
# continuation samples are cached clips read that way.
MOTION_FRAMES = 5
MOTION_LATENTS = 2  # latent frames of the MOTION_FRAMES
# The shortest cached clip that trains as a continuation: the motion frames and three latent frames after them.
CONTINUATION_MIN_LATENTS = MOTION_LATENTS + 3

# HuMo's audio windows: each latent frame sees 8 video frames of Whisper features (its own 4, widened by 2 on each
# side), each frame 5 groups of hidden states.
WINDOW = 8
AUDIO_SHIFT = 2
NUM_GROUPS = 5

# What the text slot holds in a guidance pass without the prompt: the negative prompt's embedding (as the release
# does) or the empty string's.
NULL_TEXTS = ("negative", "empty")


def latent_frames(video_frames: int) -> int:
    """Latent frames of a 1 + 4k-frame video."""
    return 1 + (video_frames - 1) // TEMPORAL_STRIDE


def round_down_frames(frames: int) -> int:
    """The longest 1 + 4k frame count <= `frames` (>= 1)."""
    return TEMPORAL_STRIDE * ((frames - 1) // TEMPORAL_STRIDE) + 1


def round_up_frames(frames: int) -> int:
    """The shortest 1 + 4k frame count >= `frames` (>= 1)."""
    return TEMPORAL_STRIDE * (-(-(frames - 1) // TEMPORAL_STRIDE)) + 1


def valid_frames(frames: int) -> bool:
    """Whether a video of `frames` frames has Wan's 1 + 4k layout."""
    return isinstance(frames, int) and frames >= 1 and (frames - 1) % TEMPORAL_STRIDE == 0
