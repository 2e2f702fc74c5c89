"""Multimodal stage-adaptive CFG: release formulas by hand, phase switching, batched == sequential, validation."""

from __future__ import annotations

import json

import pytest
import torch

from humo.errors import HumoError
from humo.guidance import (
    Condition,
    GuidancePhase,
    GuidanceSchedule,
    combine,
    count_passes,
    guided_prediction,
    load_schedule,
    preset_names,
    schedule_from_dict,
    schedule_from_spec,
)
from humo.sampler import make_sampler

TIA = ("text", "image", "audio")
C = Condition.parse  # "tia" -> Condition(text, image, audio)

# Distinct constant predictions per condition, so each formula can be worked out by hand below.
VAL = {"null": 1.0, "t": 2.0, "i": 4.0, "ti": 5.0, "ta": 7.0, "tia": 11.0}
SHAPE = (1, 2, 3, 2, 2)


def const_preds() -> dict[Condition, torch.Tensor]:
    return {C(name): torch.full(SHAPE, v) for name, v in VAL.items()}


def value_of(schedule: GuidanceSchedule, t: float) -> float:
    out = combine(const_preds(), schedule.phase_at(t), t)
    assert out.shape == SHAPE
    assert torch.all(out == out.reshape(-1)[0])
    return float(out.reshape(-1)[0])


def test_release_17b_text_audio_by_hand():
    s = schedule_from_spec("release-17b", ("text", "audio"))
    null, t, ta = VAL["null"], VAL["t"], VAL["ta"]
    expected = 5.5 * (ta - t) + 5.0 * (t - null) + null
    for step_t in (999.0, 981.0, 980.0, 500.0, 92.0):
        assert value_of(s, step_t) == pytest.approx(expected)
    assert [c.name for c in s.conditions_needed()] == ["null", "t", "ta"]


def test_release_17b_text_image_audio_switches_at_step_change():
    s = schedule_from_spec("release-17b", TIA)
    i, ti, tia, null = VAL["i"], VAL["ti"], VAL["tia"], VAL["null"]
    early = 5.5 * (tia - ti) + 5.0 * (ti - i) + i  # t > step_change: image kept in the unconditioned pass
    late = 5.5 * (tia - ti) + (5.0 - 2.0) * (ti - null) + null
    assert early != late
    assert value_of(s, 1000.0) == pytest.approx(early)
    assert value_of(s, 981.0) == pytest.approx(early)
    assert value_of(s, 980.5) == pytest.approx(early)
    assert value_of(s, 980.0) == pytest.approx(late)  # release: `if t > step_change` is False at 980
    assert value_of(s, 500.0) == pytest.approx(late)
    assert value_of(s, 0.0) == pytest.approx(late)
    assert [c.name for c in s.conditions_needed(999)] == ["i", "ti", "tia"]
    assert [c.name for c in s.conditions_needed(900)] == ["null", "ti", "tia"]


def test_release_17b_overrides_and_step_change():
    s = schedule_from_spec("release-17b", TIA, scale_t=6.0, scale_a="4.0", step_change=900)
    i, ti, tia, null = VAL["i"], VAL["ti"], VAL["tia"], VAL["null"]
    assert value_of(s, 950.0) == pytest.approx(4.0 * (tia - ti) + 6.0 * (ti - i) + i)
    assert value_of(s, 900.0) == pytest.approx(4.0 * (tia - ti) + 4.0 * (ti - null) + null)


def test_release_1_7b_by_hand():
    s = schedule_from_spec("release-1.7b", TIA)
    null, t, ta, tia = VAL["null"], VAL["t"], VAL["ta"], VAL["tia"]
    expected = 4.0 * (tia - ta) + 7.5 * (ta - t) + 7.0 * (t - null) + null
    assert value_of(s, 999.0) == pytest.approx(expected)
    assert value_of(s, 100.0) == pytest.approx(expected)
    assert [c.name for c in s.conditions_needed()] == ["null", "t", "ta", "tia"]
    ta_only = schedule_from_spec("release-1.7b", ("text", "audio"))
    assert value_of(ta_only, 500.0) == pytest.approx(7.5 * (ta - t) + 7.0 * (t - null) + null)


def test_paper_eq4_order_and_switch():
    s = schedule_from_spec("paper", TIA, scale_t=6.0, scale_i=3.0, scale_a=8.0, early_scale_t=10.0)
    null, t, ti, tia = VAL["null"], VAL["t"], VAL["ti"], VAL["tia"]
    late = 8.0 * (tia - ti) + 3.0 * (ti - t) + 6.0 * (t - null) + null
    early = 1.0 * (tia - ti) + 4.0 * (ti - t) + 10.0 * (t - null) + null
    assert value_of(s, 980.0) == pytest.approx(late)
    assert value_of(s, 990.0) == pytest.approx(early)
    assert [c.name for c in s.conditions_needed(500)] == ["null", "t", "ti", "tia"]


def test_static_cfg_none():
    null, t, ti, tia = VAL["null"], VAL["t"], VAL["ti"], VAL["tia"]
    st = schedule_from_spec("static", TIA, scale_t=2.0, scale_i=3.0, scale_a=4.0)
    assert len(st.phases) == 1
    assert (
        value_of(st, 999.0) == value_of(st, 1.0) == pytest.approx(4 * (tia - ti) + 3 * (ti - t) + 2 * (t - null) + null)
    )
    wan = schedule_from_spec("cfg", ("text",), scale=5.0)
    assert value_of(wan, 500.0) == pytest.approx(null + 5.0 * (t - null))
    assert value_of(schedule_from_spec("cfg", TIA, scale=2.0), 500.0) == pytest.approx(null + 2.0 * (tia - null))
    off = schedule_from_spec("none", TIA)
    assert off.conditions_needed() == (C("tia"),)
    assert value_of(off, 500.0) == pytest.approx(tia)


def test_annealed_scales_decrease_linearly():
    s = schedule_from_spec("annealed", ("text", "audio"), scale_t=5.0, scale_a=9.0, end_scale_t=1.0, end_scale_a=1.0)
    null, t, ta = VAL["null"], VAL["t"], VAL["ta"]

    def expected(step_t: float) -> float:
        w = step_t / 1000.0
        st, sa = 1.0 + (5.0 - 1.0) * w, 1.0 + (9.0 - 1.0) * w
        return sa * (ta - t) + st * (t - null) + null

    values = [value_of(s, x) for x in (1000.0, 750.0, 500.0, 0.0)]
    assert values == pytest.approx([expected(x) for x in (1000.0, 750.0, 500.0, 0.0)])
    assert values == sorted(values, reverse=True)
    assert values[-1] == pytest.approx(ta)  # all end scales 1: the plain fully conditioned prediction
    with pytest.raises(ValueError):
        combine(const_preds(), s.phases[0])  # annealed scales need the timestep


def test_combine_is_bit_exact_with_release_order():
    g = torch.Generator().manual_seed(0)
    p = {C(n): torch.randn(2, 4, 3, 4, 4, generator=g) for n in ("null", "t", "ta", "tia", "i", "ti")}
    s17 = schedule_from_spec("release-17b", TIA)
    # generate.py forward_tia, both branches, written exactly as the release adds them up.
    ref_early = 5.5 * (p[C("tia")] - p[C("ti")]) + 5.0 * (p[C("ti")] - p[C("i")]) + p[C("i")]
    ref_late = 5.5 * (p[C("tia")] - p[C("ti")]) + (5.0 - 2.0) * (p[C("ti")] - p[C("null")]) + p[C("null")]
    assert torch.equal(combine(p, s17.phase_at(999), 999), ref_early)
    assert torch.equal(combine(p, s17.phase_at(978), 978), ref_late)
    s1 = schedule_from_spec("release-1.7b", TIA)
    ref = (
        4.0 * (p[C("tia")] - p[C("ta")])
        + 7.5 * (p[C("ta")] - p[C("t")])
        + 7.0 * (p[C("t")] - p[C("null")])
        + p[C("null")]
    )
    assert torch.equal(combine(p, s1.phase_at(500), 500), ref)


def test_dropping_an_absent_input_matches_the_release_zero_term():
    # Without audio the release still runs TIA with zero audio: p(tia) == p(ti), so its audio term vanishes.
    g = torch.Generator().manual_seed(1)
    p = {C(n): torch.randn(1, 4, 2, 2, 2, generator=g) for n in ("null", "i", "ti")}
    p[C("tia")] = p[C("ti")].clone()
    full = schedule_from_spec("release-17b", TIA)
    ti_only = schedule_from_spec("release-17b", ("text", "image"))
    assert "audio" not in ti_only.modalities_used()
    for t in (999.0, 500.0):
        torch.testing.assert_close(combine(p, ti_only.phase_at(t), t), combine(p, full.phase_at(t), t))


def test_phase_switch_on_the_50_step_shift_5_schedule():
    sampler = make_sampler("unipc", steps=50, shift=5.0)
    s = schedule_from_spec("release-17b", TIA)
    first = [s.phase_at(t).chain[0].name for t in sampler.timesteps]
    assert first == ["i"] * 5 + ["null"] * 45
    assert float(sampler.timesteps[4]) > 980 >= float(sampler.timesteps[5])
    assert count_passes(s, sampler.timesteps) == 50 * 3
    assert count_passes(schedule_from_spec("release-1.7b", TIA), sampler.timesteps) == 50 * 4

    calls = []

    def model_fn(xb, tb, conds):
        calls.append((float(tb[0]), [c.name for c in conds]))
        return torch.zeros_like(xb)

    x = torch.zeros(1, 4, 2, 2, 2)
    for t in sampler.timesteps:
        guided_prediction(model_fn, x, t, s)
    assert [c for _, c in calls[:5]] == [["i", "ti", "tia"]] * 5
    assert [c for _, c in calls[5:]] == [["null", "ti", "tia"]] * 45
    assert [t for t, _ in calls] == sampler.timesteps.tolist()


class FakeModel:
    """Output depends nonlinearly on x, t and the condition; records every call."""

    def __init__(self):
        self.calls = []

    def weight(self, c: Condition) -> tuple[float, float]:
        code = sum(2**k for k, m in enumerate(("text", "image", "audio")) if c.has(m))
        return 0.3 + 0.2 * code, -0.5 + 0.1 * code

    def __call__(self, xb, tb, conds):
        self.calls.append((xb.clone(), tb.clone(), list(conds)))
        b = xb.shape[0] // len(conds)
        rows = []
        for j, c in enumerate(conds):
            w, bias = self.weight(c)
            xj, tj = xb[j * b : (j + 1) * b], tb[j * b : (j + 1) * b].reshape(-1, 1, 1, 1, 1)
            rows.append(torch.tanh(w * xj + bias) * (1 + tj / 1000) + w * xj**2)
        return torch.cat(rows)


def test_batched_equals_sequential_equals_chunked():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 4, 4, generator=g)
    s = schedule_from_spec("release-1.7b", TIA)
    t = torch.tensor(870.0)

    batched_model, seq_model, chunk_model = FakeModel(), FakeModel(), FakeModel()
    batched = guided_prediction(batched_model, x, t, s)
    sequential = guided_prediction(seq_model, x, t, s, sequential=True)
    chunked = guided_prediction(chunk_model, x, t, s, max_batch=6)  # 3 conditions x B=2 per call

    torch.testing.assert_close(batched, sequential, rtol=0, atol=1e-6)
    torch.testing.assert_close(batched, chunked, rtol=0, atol=1e-6)

    # by hand: each condition's prediction computed alone, then the 1.7B formula.
    ref_model = FakeModel()
    p = {c: ref_model(x, torch.full((2,), 870.0), [c]) for c in s.conditions_needed()}
    expected = 4.0 * (p[C("tia")] - p[C("ta")]) + 7.5 * (p[C("ta")] - p[C("t")]) + 7.0 * (p[C("t")] - p[C("null")])
    torch.testing.assert_close(batched, expected + p[C("null")], rtol=0, atol=1e-5)

    assert len(batched_model.calls) == 1
    xb, tb, conds = batched_model.calls[0]
    assert [c.name for c in conds] == ["null", "t", "ta", "tia"]
    assert xb.shape == (8, 4, 3, 4, 4) and tb.shape == (8,)
    assert all(torch.equal(xb[2 * j : 2 * j + 2], x) for j in range(4))  # x repeated, condition-major
    assert torch.all(tb == 870.0)
    assert [len(c) for _, _, c in seq_model.calls] == [1, 1, 1, 1]
    assert [len(c) for _, _, c in chunk_model.calls] == [3, 1]


def test_aux_outputs_come_back_per_condition_however_the_passes_are_batched():
    """A model_fn may return (velocity, aux), as the pipeline's does with the mask head's logits: each condition's
    rows of aux come back under that condition, in one call, one per condition, or chunked."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 3, 4, 4, generator=g)
    s = schedule_from_spec("release-1.7b", TIA)
    model = FakeModel()

    def with_aux(xb, tb, conds):
        b = xb.shape[0] // len(conds)
        aux = torch.cat([torch.full((b, 1), float(len(c.modalities))) for c in conds])
        return model(xb, tb, conds), aux

    plain = guided_prediction(FakeModel(), x, 870.0, s)
    for kw in ({}, {"sequential": True}, {"max_batch": 6}):
        pred, aux = guided_prediction(with_aux, x, 870.0, s, return_aux=True, **kw)
        torch.testing.assert_close(pred, plain, rtol=0, atol=1e-6)
        assert set(aux) == set(s.conditions_needed(870.0))
        assert all(torch.equal(v, torch.full((2, 1), float(len(c.modalities)))) for c, v in aux.items())
    _, none = guided_prediction(FakeModel(), x, 870.0, s, return_aux=True)
    assert none == {}


def test_max_batch_smaller_than_batch_rejected():
    s = schedule_from_spec("static", TIA)
    with pytest.raises(HumoError, match="max batch"):
        guided_prediction(FakeModel(), torch.zeros(2, 1, 1, 1, 1), 500.0, s, max_batch=1)


def test_conditions_and_null_text():
    assert C("tia") == Condition.of("audio", "text", "image") == C(["image", "audio", "text"])
    assert C("tia") == Condition(frozenset(TIA), null_text="empty")  # null_text means nothing when text is in
    assert C("null") != Condition(frozenset(), "empty")
    assert Condition(frozenset({"image"}), "empty").name == "i~empty"
    assert C("null").text_source == "negative" and C("t").text_source == "prompt"
    s = schedule_from_spec("release-17b", TIA, null_text="empty")
    assert {c.text_source for c in s.conditions_needed()} == {"empty", "prompt"}
    with pytest.raises(HumoError, match="modality"):
        C(["text", "video"])
    with pytest.raises(HumoError):
        C("tix")


def test_bad_schedules_rejected():
    tia_chain = (C("null"), C("t"), C("ta"))
    with pytest.raises(HumoError, match="negative"):
        GuidancePhase(0, 1000, tia_chain, (5.0, -1.0))
    with pytest.raises(HumoError, match="nested"):
        GuidancePhase(0, 1000, (C("null"), C("ta"), C("ti")), (1.0, 1.0))
    with pytest.raises(HumoError, match="nested"):
        GuidancePhase(0, 1000, (C("t"), C("t")), (1.0,))
    with pytest.raises(HumoError, match="scales"):
        GuidancePhase(0, 1000, tia_chain, (1.0,))
    with pytest.raises(HumoError):
        GuidancePhase(500, 400, tia_chain, (1.0, 1.0))
    with pytest.raises(HumoError):
        GuidancePhase(0, 1200, tia_chain, (1.0, 1.0))
    with pytest.raises(HumoError, match="mixes"):
        GuidancePhase(0, 1000, (C("null"), Condition(frozenset({"image"}), "empty")), (1.0,))
    with pytest.raises(HumoError, match="gap"):
        GuidanceSchedule((GuidancePhase(900, 1000, tia_chain, (1, 1)), GuidancePhase(0, 800, tia_chain, (1, 1))))
    with pytest.raises(HumoError, match="gap"):
        GuidanceSchedule((GuidancePhase(10, 1000, tia_chain, (1, 1)),))
    with pytest.raises(HumoError, match="not covered"):
        GuidanceSchedule((GuidancePhase(0, 990, tia_chain, (1, 1)),))
    with pytest.raises(HumoError, match="overlap"):
        GuidanceSchedule((GuidancePhase(500, 1000, tia_chain, (1, 1)), GuidancePhase(0, 600, tia_chain, (1, 1))))
    with pytest.raises(HumoError, match="negative"):
        schedule_from_spec("release-17b", TIA, scale_t=1.0)  # late text scale 1 - 2 < 0
    with pytest.raises(HumoError, match="unknown"):
        schedule_from_spec("magic", TIA)
    with pytest.raises(HumoError, match="scale_i"):
        schedule_from_spec("release-17b", TIA, scale_i=3.0)  # the 17B has no image scale
    with pytest.raises(HumoError, match="text"):
        schedule_from_spec("release-1.7b", ("image", "audio"))
    with pytest.raises(HumoError, match="outside"):
        schedule_from_spec("static", TIA).phase_at(1001.0)


def test_dict_round_trip_and_config_files(tmp_path):
    for name in preset_names():
        s = schedule_from_spec(name, TIA)
        d = json.loads(json.dumps(s.to_dict()))
        assert schedule_from_dict(d) == s

    cfg = {
        "name": "mine",
        "phases": [
            {"t_min": 0, "t_max": 980, "chain": ["null", "ti", "tia"], "scales": [3.0, 5.5]},
            {"t_min": 980, "t_max": 1000, "chain": [["image"], ["text", "image"], TIA], "scales": [5.0, 5.5]},
        ],
    }
    p = tmp_path / "g.json"
    p.write_text(json.dumps(cfg))
    mine = load_schedule(p, TIA)
    assert mine.phases == schedule_from_spec("release-17b", TIA).phases
    y = tmp_path / "g.yaml"
    y.write_text("preset: release-1.7b\nscale_i: 2.5\n")
    from_yaml = load_schedule(y, TIA)
    assert from_yaml.name == "release-1.7b" and from_yaml.phases[0].scales == (7.0, 7.5, 2.5)

    with pytest.raises(HumoError, match="no image input"):
        load_schedule(p, ("text", "audio"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"phases": [{"t_min": 0, "t_max": 1000, "chain": ["null", "t"], "scale": [1.0]}]}')
    with pytest.raises(HumoError, match="unknown key 'scale'"):
        load_schedule(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(HumoError, match="cannot parse"):
        load_schedule(broken)
    with pytest.raises(HumoError, match="not found"):
        load_schedule(tmp_path / "missing.json")


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("given", [("text", "image"), TIA])
def test_every_preset_keeps_a_pose_on_in_every_pass(preset, given):
    """OmniHuman-1 guides text and audio, never the pose: with a pose given, each preset's passes are its passes
    without a pose, each with the pose added, and so is its formula (same links, same scales)."""
    without = schedule_from_spec(preset, given)
    posed = schedule_from_spec(preset, (*given, "pose"))
    assert all(c.has("pose") for c in posed.conditions_needed())
    for t in (999.0, 990.0, 500.0, 0.0):
        a, b = without.phase_at(t), posed.phase_at(t)
        assert [c.modalities | {"pose"} for c in a.chain] == [c.modalities for c in b.chain]
        assert a.scales_at(t) == b.scales_at(t)
        assert (
            value_of(without, t)
            == combine({C(k + "p" if k != "null" else "p"): torch.full(SHAPE, v) for k, v in VAL.items()}, b, t)
            .reshape(-1)[0]
            .item()
        )
    # the passes see the pose: the rows' Keep says so, the same rule training applies
    from humo.conditioning import Keep

    keep = Keep.of_conditions(list(posed.conditions_needed()), 1)
    assert keep["pose"].all()


def test_a_guidance_config_guides_pose_only_when_it_names_it():
    phases = [{"t_min": 0, "t_max": 1000, "chain": ["ti", "tia"], "scales": [5.0]}]
    kept = schedule_from_dict({"phases": phases}, ("text", "image", "audio", "pose"))
    assert [c.name for c in kept.phases[0].chain] == ["tip", "tiap"]  # as the presets do
    named = [{"t_min": 0, "t_max": 1000, "chain": ["tia", "tiap"], "scales": [2.0]}]
    guided = schedule_from_dict({"phases": named}, ("text", "image", "audio", "pose"))
    assert [c.name for c in guided.phases[0].chain] == ["tia", "tiap"]  # pose CFG, as written
    with pytest.raises(HumoError, match="use pose but no pose input"):
        schedule_from_dict({"phases": named}, TIA)
