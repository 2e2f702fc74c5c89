"""Multimodal, stage-adaptive classifier-free guidance over nested conditions.

A **condition** says which inputs one DiT pass sees: a subset of {text, image, audio}. An input left out is
replaced by its null: the null image is the zero reference (17B: the zero-video latent in ``y``; 1.7B: zero
reference latents), the null audio is all-zero Whisper features (before ``audio_proj``), and the null text is
the *negative prompt* embedding -- in both release scripts every pass without the prompt encodes
``n_prompt`` (Wan's default negative prompt unless the user gives one); there is no separate empty-text pass.
``Condition.null_text = "empty"`` selects the empty-string embedding instead (the paper's null token read
literally); ``"negative"`` is the default everywhere.

A guided prediction is a **chain** of strictly nested conditions c_0 < c_1 < ... < c_n with scales s_1..s_n::

    pred = p(c_0) + sum_k s_k * (p(c_k) - p(c_{k-1}))

evaluated as ``s_n*(p_n - p_{n-1}) + ... + s_1*(p_1 - p_0) + p_0`` (the release's order of operations). It covers:

    formula                 chain                  scales
    Wan CFG                 null, t                sT
    17B text+audio          null, t, ta            sT, sA
    17B t+i+a, t > 980      i, ti, tia             sT, sA
    17B t+i+a, t <= 980     null, ti, tia          sT - 2, sA
    1.7B t+i+a              null, t, ta, tia       sT, sA, sI
    paper eq. 4             null, t, ti, tia       lambda_txt, lambda_img, lambda_a

A **phase** applies one chain to timesteps ``t_min < t <= t_max`` (timesteps in [0, 1000]; the phase whose
``t_min`` is 0 also takes t = 0). A **schedule** is phases that tile [0, 1000] with no gap or overlap. The 17B
switch is the release's ``if t > step_change``: phase (980, 1000] gets the image-kept formula, [0, 980] the other;
with 50 steps at shift 5 that is the first 5 steps (t = 999, 995, 991, 987, 982).
"""

from humo.constants import NULL_TEXTS
from humo.guidance.parsing import load_schedule, schedule_from_dict, schedule_from_spec
from humo.guidance.presets import PRESETS, annealed, cfg, none, paper, preset_names, release_1_7b, release_17b, static
from humo.guidance.schedule import (
    MODALITIES,
    T_MAX,
    Condition,
    GuidancePhase,
    GuidanceSchedule,
    ModelFn,
    combine,
    count_passes,
    guided_prediction,
)

__all__ = [
    "MODALITIES",
    "T_MAX",
    "NULL_TEXTS",
    "Condition",
    "GuidancePhase",
    "GuidanceSchedule",
    "ModelFn",
    "combine",
    "guided_prediction",
    "count_passes",
    "PRESETS",
    "preset_names",
    "schedule_from_spec",
    "schedule_from_dict",
    "load_schedule",
    "release_17b",
    "release_1_7b",
    "paper",
    "static",
    "annealed",
    "cfg",
    "none",
]
