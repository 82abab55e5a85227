"""benchmarks/paired.py: two eval JSONs of the same pairs compared pair by pair, with a bootstrap interval."""

from __future__ import annotations

import json

import pytest


def eval_json(path, epes, valid, ids=None):
    ids = ids or [f"gen{i:05d}" for i in range(len(epes))]
    samples = [{"id": i, "epe": e, "valid_pixels": v} for i, e, v in zip(ids, epes, valid)]
    path.write_text(json.dumps({"epe": 0.0, "samples": samples}))
    return path


def test_a_uniform_change_has_no_spread_and_means_are_pixel_weighted(load_benchmark, tmp_path, capsys):
    paired = load_benchmark("paired")
    base = eval_json(tmp_path / "base.json", [1.0, 3.0, 2.0], [1, 3, 4])  # (1 + 9 + 8) / 8 = 2.25
    # the same pairs listed in another order, each 10 % better
    new = eval_json(tmp_path / "new.json", [1.8, 0.9, 2.7], [4, 1, 3], ids=["gen00002", "gen00000", "gen00001"])
    (row,) = paired.main([str(base), str(new), "--resamples", "200"])
    assert row.epe == pytest.approx(0.9 * 2.25) and row.change == pytest.approx(-0.1)
    assert row.low == pytest.approx(-0.1) and row.high == pytest.approx(-0.1)
    assert (row.better, row.worse) == (3, 0)
    out = capsys.readouterr().out
    assert "baseline" in out and "EPE 2.250" in out and f"| {new} | 2.025 | -10.0% | -10.0% .. -10.0% | 3 / 0 |" in out


def test_mixed_changes_give_an_interval_around_the_mean_change(load_benchmark, tmp_path):
    paired = load_benchmark("paired")
    rng = __import__("random").Random(1)
    epes = [rng.uniform(1, 5) for _ in range(40)]
    base = eval_json(tmp_path / "base.json", epes, [100] * 40)
    # half the pairs 20 % better, half 10 % worse: 5 % better on average, but unsure
    new = eval_json(tmp_path / "new.json", [e * (0.8 if i % 2 else 1.1) for i, e in enumerate(epes)], [100] * 40)
    (row,) = paired.main([str(base), str(new), "--resamples", "2000"])
    exact = sum(e * (0.8 if i % 2 else 1.1) for i, e in enumerate(epes)) / sum(epes) - 1
    assert row.change == pytest.approx(exact) and row.low < exact < row.high
    assert row.high - row.low > 0.02 and (row.better, row.worse) == (20, 20)


def test_evals_of_other_pairs_are_refused(load_benchmark, tmp_path):
    paired = load_benchmark("paired")
    base = eval_json(tmp_path / "base.json", [1.0, 2.0], [1, 1])
    other = eval_json(tmp_path / "other.json", [1.0, 2.0, 3.0], [1, 1, 1])
    with pytest.raises(SystemExit, match="not the pairs of"):
        paired.main([str(base), str(other)])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="not an eval JSON with per-pair samples"):
        paired.main([str(base), str(tmp_path / "bad.json")])


def test_another_set_with_the_same_ids_is_refused_and_other_options_noted(load_benchmark, tmp_path, capsys):
    paired = load_benchmark("paired")

    def generated(path, seed, valid=(10, 10), options=None):  # ids are gen00000.. whatever the seed
        eval_json(path, [1.0, 2.0], list(valid))
        data = json.loads(path.read_text())
        data.update(source=f"generated test set (seed {seed}, 2 pairs, 64x96)", options=options or {"refine": 1})
        path.write_text(json.dumps(data))
        return str(path)

    base = generated(tmp_path / "base.json", 2024113)
    with pytest.raises(SystemExit, match=r"another set \(generated test set \(seed 99"):
        paired.main([base, generated(tmp_path / "seed99.json", 99)])
    with pytest.raises(SystemExit, match="the same pair ids with other valid pixels"):
        paired.main([base, generated(tmp_path / "pixels.json", 2024113, valid=(10, 9))])
    paired.main([base, generated(tmp_path / "alone.json", 2024113, options={"refine": 0})])
    assert "ran with other options ({'refine': 0}) than the baseline ({'refine': 1})" in capsys.readouterr().out


def test_a_pair_without_valid_pixels_weighs_nothing(load_benchmark, tmp_path):
    paired = load_benchmark("paired")
    base = eval_json(tmp_path / "base.json", [2.0, float("nan")], [10, 0])  # eval writes NaN for it
    new = eval_json(tmp_path / "new.json", [1.0, float("nan")], [10, 0])
    (row,) = paired.main([str(base), str(new), "--resamples", "50"])
    assert row.epe == pytest.approx(1.0) and row.change == pytest.approx(-0.5)
