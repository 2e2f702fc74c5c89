"""OmniHuman-1's omni-condition training as configuration of the one trainer: condition ratios, the order of
conditions, the stages of configs/omnihuman.json."""

from __future__ import annotations

import json

import pytest
import torch

from humo.conditioning import STRENGTH, check_condition_order
from humo.errors import HumoError
from humo.training.config import TrainConfig, load_config
from humo.training.curriculum import stage_for
from humo.training.objective import draw, keep_flags, keep_ratios, nested_thresholds
from humo.training.omni import OmniStage, check_schedule, load_schedule, stage_fields
from tests.helpers import TINY, TINY_AUDIO, synthetic_cache, tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")

RATIOS = {"text": 0.9, "image": 0.6, "audio": 0.3, "pose": 0.5}
N = 20_000
TOL = 0.02  # about 4 standard errors of a share measured on the smallest group below (~3000 rows)


class _Batch:
    """What `keep_flags` reads of a TrainingBatch: the tasks and the presence flags."""

    def __init__(self, has: dict[str, torch.Tensor]):
        self.tasks = ["omni"] * len(has["image"])
        self._has = has

    def has(self, m):
        return self._has[m] if m != "text" else torch.ones(len(self.tasks), dtype=torch.bool)


def _kept(ratios, has, seed=0):
    """Per modality [N] bool: what N samples with the presence flags `has` keep under `ratios`."""
    cfg = TrainConfig(stage=2, condition_ratios=ratios)
    draws = draw(torch.Generator().manual_seed(seed), N, (1, 1, 1, 1), cfg)
    keep = keep_flags(_Batch(has), draws)
    return {"text": torch.tensor([s == "prompt" for s in keep.text]), **{m: keep[m] for m in STRENGTH[1:]}}


def _all(value=True):
    return {m: torch.full((N,), value) for m in STRENGTH[1:]}


def _rates(kept) -> dict[str, float]:
    """Each condition's realised ratio: its share among the samples that keep the next weaker one."""
    out, before = {}, torch.ones(N, dtype=torch.bool)
    for m in STRENGTH:
        out[m] = float(kept[m][before].float().mean())
        before = kept[m]
    return out


def _off(realised: dict[str, float], configured: dict[str, float]) -> float:
    return max(abs(realised[m] - configured[m]) for m in STRENGTH)


def test_realised_keep_rates_match_the_configured_ratios_and_a_wrong_ratio_is_detected():
    kept = _kept(RATIOS, _all())
    realised = _rates(kept)
    assert _off(realised, RATIOS) < TOL, realised
    # the nested draw's marginals are the products: the stronger the condition, the fewer samples train it
    marginal = nested_thresholds(RATIOS)
    for m in STRENGTH:
        assert float(kept[m].float().mean()) == pytest.approx(marginal[m], abs=TOL), m
    # the same check catches a ratio that is not the configured one, for each condition
    for m in STRENGTH:
        wrong = {**RATIOS, m: RATIOS[m] + 0.1 if RATIOS[m] < 0.9 else RATIOS[m] - 0.1}
        assert _off(realised, wrong) > TOL, m
    # and a run drawn with a wrong ratio fails it
    assert _off(_rates(_kept({**RATIOS, "audio": 0.4}, _all(), seed=1)), RATIOS) > TOL


def test_the_paper_preset_halves_the_ratios_from_text_to_pose():
    final = load_schedule()[-1].ratios
    shares = list(nested_thresholds(final).values())
    assert shares == pytest.approx([0.9, 0.45, 0.225, 0.1125])
    realised = _kept(final, _all())
    for m, share in zip(STRENGTH, shares, strict=True):
        assert float(realised[m].float().mean()) == pytest.approx(share, abs=TOL), m


def test_samples_without_the_strong_condition_still_train_the_weaker_ones():
    no_audio = {**_all(), "audio": torch.arange(N) % 2 == 0}  # half the samples have no usable audio
    kept = _kept(RATIOS, no_audio)
    lacking = ~no_audio["audio"]
    assert not kept["audio"][lacking].any()
    # text and reference are kept on them at the same rates as on the samples with audio
    for rows in (lacking, ~lacking):
        assert float(kept["text"][rows].float().mean()) == pytest.approx(RATIOS["text"], abs=TOL)
        both = kept["text"] & rows
        assert float(kept["image"][both].float().mean()) == pytest.approx(RATIOS["image"], abs=TOL)
    # a pose may come without audio (pose-only driving): kept on the samples without audio that keep the reference
    assert kept["pose"][lacking].any()
    # no reference: no pose (a pose comes with the reference), while text and audio train on
    no_image = _kept(RATIOS, {**_all(), "image": torch.zeros(N, dtype=torch.bool)})
    assert not no_image["pose"].any() and no_image["audio"].any() and no_image["text"].any()


def test_every_drawn_sample_obeys_the_order_of_conditions():
    g = torch.Generator().manual_seed(3)
    has = {m: torch.rand(N, generator=g) < 0.7 for m in STRENGTH[1:]}  # every mix of missing conditions
    kept = _kept(RATIOS, has)
    for i in range(N):
        check_condition_order([m for m in STRENGTH if kept[m][i]], f"sample {i}: ")
    # HuMo's rule drops each condition on its own: there the order is broken (audio kept without text)
    humo = TrainConfig(stage=2)
    draws = draw(torch.Generator().manual_seed(0), N, (1, 1, 1, 1), humo)
    assert not draws.ordered
    keep = keep_flags(_Batch(_all()), draws)
    no_text = torch.tensor([s != "prompt" for s in keep.text])
    assert (keep["image"] & no_text).any()


def test_humo_rule_is_unchanged_without_condition_ratios():
    cfg = TrainConfig(text_dropout=0.2, image_dropout=0.0, audio_dropout=0.3, pose_ratio=0.4)
    assert keep_ratios(cfg) == pytest.approx({"text": 0.8, "image": 1.0, "audio": 0.7, "pose": 0.4})
    assert stage_for(TrainConfig(stage=2)).tasks == ("subject", "av")
    assert stage_for(TrainConfig(stage=2, condition_ratios=RATIOS)).tasks == ("omni",)


def test_condition_ratios_are_checked():
    with pytest.raises(HumoError, match="name each of text, image, audio, pose"):
        TrainConfig(stage=2, condition_ratios={"text": 1.0, "image": 0.5})
    with pytest.raises(HumoError, match=r"condition_ratios.audio 1.5: must be a number in \[0, 1\]"):
        TrainConfig(stage=2, condition_ratios={**RATIOS, "audio": 1.5})
    with pytest.raises(HumoError, match="must be 0 in stage 1"):
        TrainConfig(stage=1, condition_ratios=RATIOS)
    with pytest.raises(HumoError, match="stage 0 trains no conditions"):
        TrainConfig(stage=0, condition_ratios={**RATIOS, "audio": 0.0})
    with pytest.raises(HumoError, match="single_stage"):
        TrainConfig(stage=2, single_stage=True, condition_ratios=RATIOS)
    cfg = load_config(None, ["stage=2", "cache=c", "condition_ratios.audio=0.1"], [{"condition_ratios": RATIOS}])
    assert cfg.condition_ratios == {**RATIOS, "audio": 0.1}


def test_the_schedule_adds_conditions_in_the_papers_order(tmp_path):
    stages = load_schedule()
    assert [s.conditions for s in stages] == [STRENGTH[:2], STRENGTH[:3], STRENGTH]
    assert [s.fields["stage"] for s in stages] == [1, 2, 2]
    assert stage_fields(stages, 2, audio=0.1)["condition_ratios"]["audio"] == 0.1
    assert stages[1].ratios["audio"] == 0.5  # a copy was changed, not the schedule
    for k in range(1, 4):  # each stage layered over the toy config is a valid training config
        load_config("configs/toy.json", ["cache=c"], [stage_fields(stages, k)])
    with pytest.raises(HumoError, match="stages 1 to 3"):
        stage_fields(stages, 4)
    pose_first = {**RATIOS, "audio": 0.0}
    with pytest.raises(HumoError, match="trains text, image, pose: conditions come in the order"):
        check_schedule([OmniStage("pose before audio", {"condition_ratios": pose_first})])
    same = {"condition_ratios": {**RATIOS, "pose": 0.0}}
    with pytest.raises(HumoError, match="adds no condition"):
        check_schedule([OmniStage("a", same), OmniStage("b", same)])
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"stages": [{"name": "x"}]}))
    with pytest.raises(HumoError, match="expected"):
        load_schedule(bad)


def test_the_trainer_draws_every_sample_and_trains_the_pose_guider_in_the_pose_stage(tmp_path):
    """Stage 3 of the schedule in the one trainer: every sample is drawn (those without a reference or audio too)
    and a fresh pose guider learns from the samples that have a pose."""
    from humo.checkpoint import save_dit
    from humo.dit import HumoDiT
    from humo.training.loop import Trainer
    from tests.helpers import tiny_cfg

    model = {**TINY, **TINY_AUDIO, "mask_head_blocks": 2}
    synthetic_cache(
        tmp_path / "c", samples=4, text_dim=model["text_dim"], audio_window=(8, 5, model["audio_feat_dim"]),
        with_refs=[True, False, True, True], with_audio=[True, True, False, True], with_pose=[True, True, False, True],
    )  # fmt: skip
    base = tmp_path / "humo.safetensors"
    save_dit(HumoDiT(tiny_cfg("humo-1.7b", **model)), base)
    fields = stage_fields(load_schedule(), 3)
    fields["model_overrides"] = {**model, "pose_channels": 4, "pose_hidden": 8}
    cfg = tiny_train_config(tmp_path / "c", tmp_path / "run", **fields, init=str(base), steps=2, weight_decay=0.0)
    trainer = Trainer(cfg)
    assert sorted(trainer.sampler.pools["omni"].tolist()) == [0, 1, 2, 3]
    assert trainer.uses_pose and any(n.startswith("pose_guider.") for n in trainer.params)
    # OmniHuman-1 fine-tunes the whole DiT: the FFNs and the text cross-attention learn too
    assert set(trainer.params) == {n for n, _ in trainer.model.named_parameters()}
    summary = trainer.run()
    assert summary["steps"] == 2
