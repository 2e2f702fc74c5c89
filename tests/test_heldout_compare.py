"""Two held-out evaluations compared clip by clip (`python -m humo.evaluation.heldout compare`)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from humo.errors import HumoError
from humo.evaluation.heldout import clip_differences, main


def _result(text, subject, subject_mis, sync, sync_shuf, ids=None):
    ids = ids or [f"c{i}" for i in range(len(text))]
    rows = {
        k: {"own": {"text_mean": t, "subject_acc": s, "sync_c": c}, "mismatched_ref": {"subject_acc": sm},
            "shuffled_audio": {"sync_c": cs}}
        for k, t, s, sm, c, cs in zip(ids, text, subject, subject_mis, sync, sync_shuf, strict=True)
    }  # fmt: skip
    return {"rows": rows}


def test_a_better_model_on_every_clip_has_an_interval_above_zero_and_an_equal_one_around_zero():
    g = np.random.default_rng(0)
    n = 30
    text, subj, mis = g.random(n), g.random(n), g.random(n) * 0.5
    sync, shuf = g.random(n) + 0.5, g.random(n) * 0.5
    a = _result(text, subj, mis, sync, shuf)
    better = _result(text + 0.1, subj + 0.05, mis, sync + 0.2, shuf)
    d = clip_differences(a, better)
    for name, step in (("text_mean", 0.1), ("subject_acc", 0.05), ("subject_gain", 0.05), ("sync_margin", 0.2)):
        assert d[name]["mean"] == pytest.approx(step) and 0 < d[name]["lo"] <= d[name]["hi"]
        assert d[name]["higher"] == n and d[name]["lower"] == 0 and d[name]["clips"] == n
    # noise around no difference: the interval holds 0; the other way round: below 0
    noisy = _result(text + g.normal(0, 0.1, n), subj, mis, sync, shuf)
    d = clip_differences(a, noisy)["text_mean"]
    assert d["lo"] < 0 < d["hi"] and d["higher"] + d["lower"] == n
    assert clip_differences(better, a)["sync_c"]["hi"] < 0
    # a mismatched baseline that moves with the model cancels out of the gain
    both = _result(text, subj + 0.05, mis + 0.05, sync, shuf)
    assert clip_differences(a, both)["subject_gain"]["mean"] == pytest.approx(0.0, abs=1e-12)


def test_only_shared_clips_with_values_are_paired_and_nothing_shared_is_an_error():
    a = _result([0.5, 0.5, None], [0.5] * 3, [0.2] * 3, [1.0] * 3, [0.5] * 3)
    b = _result([0.7, 0.6, 0.9, 0.1], [0.5] * 4, [0.2] * 4, [1.0] * 4, [0.5] * 4, ids=["c0", "c1", "c2", "x"])
    d = clip_differences(a, b)["text_mean"]
    assert d["clips"] == 2 and d["mean"] == pytest.approx(0.15)  # c2 has no value in a, x is only in b
    with pytest.raises(HumoError, match="share no clip"):
        clip_differences(a, _result([0.1], [0.1], [0.1], [0.1], [0.1], ids=["y"]))


def test_compare_command_prints_the_differences_and_names_bad_files(tmp_path, capsys):
    a, b, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    a.write_text(json.dumps(_result([0.5, 0.4], [0.6, 0.6], [0.2, 0.3], [1.0, 0.9], [0.5, 0.5])))
    b.write_text(json.dumps(_result([0.6, 0.5], [0.6, 0.6], [0.2, 0.3], [1.0, 0.9], [0.5, 0.5])))
    bad.write_text(json.dumps({"summary": {}}))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^text_mean +\+0.100 ", out, re.M) and "2 / 0 of 2" in out
    widths = {re.match(r"\S+ +", line).end() for line in out.splitlines()[1:]}
    assert len(widths) == 1  # the columns line up, the longest name included
    assert main(["compare", str(a), str(bad)]) == 2
    assert "is not a `humo eval --json` result" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
