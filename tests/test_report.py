"""The reference's table: EPE of both parts of its split and time per image, beside its figures."""

from __future__ import annotations

import json

import pytest

from flowcli.data.scenes import SynthConfig

from flowcli.data.synth import write_dataset
from flowcli.errors import DataError
from flowcli.inference.evaluate import evaluate
from flowcli.inference.options import InferenceOptions
from flowcli.inference.report import REFERENCE_FIGURES, reference_report

NETWORK_ALONE = InferenceOptions(refine=0, smooth=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "chairs"
    write_dataset(path, count=10, seed=4, config=SynthConfig(height=64, width=96))
    return path


def test_the_report_is_evaluate_on_each_part_of_the_reference_split(folder):
    report = reference_report(folder, weights="random", options=NETWORK_ALONE)
    train = evaluate(folder, split="reference", part="train", weights="random", options=NETWORK_ALONE)
    test = evaluate(folder, split="reference", part="test", weights="random", options=NETWORK_ALONE)
    assert (report.train_pairs, report.test_pairs) == (8, 2)  # int(0.8 * 10) and the rest
    assert report.train_epe == pytest.approx(train.epe) and report.test_epe == pytest.approx(test.epe)
    assert report.train_epe != pytest.approx(report.test_epe)  # two different sets of pairs
    assert report.s_per_image > 0
    assert report.reference == {"train_epe": 8.04, "test_epe": 7.0, "s_per_image": 0.0107}


def test_the_table_command_prints_both_rows_and_writes_json(folder, run_cli, tmp_path):
    result = run_cli("eval", folder, "--weights", "random", "--report", "reference", "--refine", "0",
                     "--no-smooth", "--json", tmp_path / "ref.json")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "ref.json").read_text())
    shown = " ".join(result.stdout.split())
    assert f"{saved['train_epe']:.3f}" in shown and f"{saved['test_epe']:.3f}" in shown
    assert "8.04" in shown and "7.0" in shown and "0.0107 s" in shown
    assert "EPE train-val" in shown and "EPE test" in shown and "time per image" in shown
    assert saved["reference"] == REFERENCE_FIGURES and saved["options"]["refine"] == 0


def test_the_table_needs_the_reference_split_and_a_folder(folder, run_cli):
    with pytest.raises(DataError, match="needs its data"):
        reference_report(None, weights="random")
    result = run_cli("eval", folder, "--weights", "random", "--report", "reference", "--split", "seeded")
    assert result.exit_code == 1 and "--report reference evaluates the reference split" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("option", [["--part", "test"], ["--count", "8"], ["--seed", "3"], ["--motion", "wide"],
                                    ["--scene-seed", "99"], ["--layout", "chairs"], ["--pass", "final"],
                                    ["--fb-check"], ["--metric", "epe"]])
def test_the_table_refuses_options_it_would_ignore(folder, run_cli, monkeypatch, option):
    import flowcli.inference.report as report

    monkeypatch.setattr(report, "reference_report", lambda *a, **k: pytest.fail("evaluated"))
    result = run_cli("eval", folder, "--weights", "random", "--report", "reference", *option)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"{option[0]} would be ignored: leave it out" in result.stderr
