"""Dataset layouts: a small tree of every layout, built here from generated pairs (written with
flowcli.io; KITTI's flow in its 16-bit PNG encoding), evaluates to the EPE of the same pairs in
Flying Chairs layout, through the API and the CLI; predict writes one flow per pair; train takes
KITTI's sparse ground truth; a partly matching, mixed or wrongly forced tree is one error line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowcli.data.layouts import detect_layout, find_pairs
from flowcli.errors import DataError
from flowcli.inference.evaluate import evaluate
from flowcli.io import read_flo, read_image, write_flo, write_image, write_kitti_flow

UNKNOWN = 1e10  # a .flo value > 1e9: no ground truth at that pixel


def source_pairs(tiny_chairs: Path, n: int = 5) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n generated pairs (64x96), every other flow with a block of unknown pixels."""
    pairs = []
    for i in range(1, n + 1):
        flow = read_flo(tiny_chairs / f"{i:05d}_flow.flo").copy()
        if i % 2:
            flow[:3, :5] = UNKNOWN
        pairs.append((read_image(tiny_chairs / f"{i:05d}_img1.ppm"), read_image(tiny_chairs / f"{i:05d}_img2.ppm"), flow))
    return pairs


def build_chairs(root: Path, pairs) -> Path:
    root.mkdir(parents=True)
    for i, (a, b, flow) in enumerate(pairs, 1):
        write_image(root / f"{i:05d}_img1.ppm", a)
        write_image(root / f"{i:05d}_img2.ppm", b)
        write_flo(root / f"{i:05d}_flow.flo", flow)
    return root


def build_triplets(root: Path, pairs, names: tuple[str, str, str]) -> list:
    root.mkdir(parents=True)
    for i, (a, b, flow) in enumerate(pairs):
        write_image(root / f"{i:07d}{names[0]}", a)
        write_image(root / f"{i:07d}{names[1]}", b)
        write_flo(root / f"{i:07d}{names[2]}", flow)
    return list(pairs)


def build_sintel(root: Path, pairs) -> list:
    """Scenes alley_1 (3 frames) and bamboo_2 (4): frame i + 1 of a scene is image 2 of its pair i,
    so the scene's pairs are (frame i, frame i + 1) with pair i's flow. The final pass is the clean
    one inverted."""
    scenes = {"alley_1": pairs[0:2], "bamboo_2": pairs[2:5]}
    actual = []
    for scene, members in scenes.items():
        frames = [members[0][0]] + [b for _, b, _ in members]
        for folder, transform in (("clean", lambda f: f), ("final", lambda f: 255 - f)):
            (root / "training" / folder / scene).mkdir(parents=True)
            for k, frame in enumerate(frames, 1):
                write_image(root / "training" / folder / scene / f"frame_{k:04d}.png", transform(frame))
        (root / "training" / "flow" / scene).mkdir(parents=True)
        for k, (_, _, flow) in enumerate(members, 1):
            write_flo(root / "training" / "flow" / scene / f"frame_{k:04d}.flo", flow)
            actual.append((frames[k - 1], frames[k], flow))
    return actual


def kitti_truth(pairs) -> list:
    """KITTI's ground truth of the pairs: sparse (about 60 % valid, and never where the .flo is
    unknown), and quantised to 1/64 px, as the 16-bit PNG stores it; unknown as UNKNOWN."""
    rng = np.random.default_rng(7)
    truth = []
    for a, b, flow in pairs:
        valid = (rng.random(flow.shape[:2]) < 0.6) & (np.abs(flow) < 1e9).all(axis=2)
        quantised = np.where(valid[..., None], np.round(flow.astype(np.float64) * 64) / 64, UNKNOWN)
        truth.append((a, b, quantised.astype(np.float32), valid))
    return truth


def build_kitti(root: Path, pairs, images: str = "image_2", flows: str = "flow_occ") -> list:
    (root / "training" / images).mkdir(parents=True)
    (root / "training" / flows).mkdir()
    actual = []
    for i, (a, b, flow, valid) in enumerate(kitti_truth(pairs)):
        write_image(root / "training" / images / f"{i:06d}_10.png", a)
        write_image(root / "training" / images / f"{i:06d}_11.png", b)
        write_kitti_flow(root / "training" / flows / f"{i:06d}_10.png", flow, valid)
        actual.append((a, b, flow))
    return actual


MIDDLEBURY_SEQS = ("Dimetrodon", "Grove2", "Hydrangea", "RubberWhale", "Venus")


def build_middlebury(root: Path, pairs) -> list:
    for seq, (a, b, flow) in zip(MIDDLEBURY_SEQS, pairs):
        (root / "other-data" / seq).mkdir(parents=True)
        (root / "other-gt-flow" / seq).mkdir(parents=True)
        write_image(root / "other-data" / seq / "frame10.png", a)
        write_image(root / "other-data" / seq / "frame11.png", b)
        write_flo(root / "other-gt-flow" / seq / "flow10.flo", flow)
    (root / "other-data" / "Backyard").mkdir()  # as in Middlebury: frames without published ground truth
    write_image(root / "other-data" / "Backyard" / "frame10.png", pairs[0][0])
    write_image(root / "other-data" / "Backyard" / "frame11.png", pairs[0][1])
    return list(pairs)


def build_list(root: Path, pairs) -> list:
    (root / "frames").mkdir(parents=True)
    (root / "gt").mkdir()
    lines = ["# img1 img2 flow, relative to this file", ""]
    for i, (a, b, flow) in enumerate(pairs):
        write_image(root / "frames" / f"{i}a.png", a)
        write_image(root / "frames" / f"{i}b.png", b)
        write_flo(root / "gt" / f"{i}.flo", flow)
        lines.append(f"frames/{i}a.png frames/{i}b.png gt/{i}.flo")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return list(pairs)


BUILDERS = {
    "chairs": lambda root, pairs: (build_chairs(root, pairs), list(pairs))[1],
    "flownet": lambda root, pairs: build_triplets(root, pairs, ("-img0.ppm", "-img1.ppm", "-gt.flo")),
    "chairs2": lambda root, pairs: build_triplets(root, pairs, ("-img_0.png", "-img_1.png", "-flow_01.flo")),
    "sintel": build_sintel,
    "kitti": build_kitti,
    "kitti2012": lambda root, pairs: build_kitti(root, pairs, "colored_0", "flow_noc"),
    "middlebury": build_middlebury,
    "list": build_list,
}


@pytest.fixture(scope="module")
def trees(tiny_chairs, tmp_path_factory) -> dict[str, tuple[Path, list]]:
    """{name: (tree, its pairs in the order the layout lists them)}; read-only."""
    pairs = source_pairs(tiny_chairs)
    base = tmp_path_factory.mktemp("layouts")
    return {name: (base / name, build(base / name, pairs)) for name, build in BUILDERS.items()}


def layout_name(name: str) -> str:
    return "kitti" if name == "kitti2012" else name


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_layout_evaluates_to_the_epe_of_the_same_pairs_in_chairs_layout(name, trees, tmp_path, run_cli):
    root, actual = trees[name]
    assert detect_layout(root) == layout_name(name)
    chairs = evaluate(build_chairs(tmp_path / "same", actual), split="all", warmup=0)
    got = evaluate(root, split="all", warmup=0)
    assert got.layout == layout_name(name) and got.pairs == chairs.pairs == len(actual)
    assert got.epe == pytest.approx(chairs.epe, rel=1e-9) and got.fl_all == pytest.approx(chairs.fl_all, rel=1e-9)
    assert [s.epe for s in got.samples] == pytest.approx([s.epe for s in chairs.samples], rel=1e-9)
    unknown = sum(int((np.abs(flow) > 1e9).any(axis=2).sum()) for _, _, flow in actual)
    assert got.invalid_pixels == chairs.invalid_pixels == unknown > 0  # masked, and counted
    assert got.valid_pixels == sum(flow.shape[0] * flow.shape[1] for _, _, flow in actual) - unknown
    # the CLI: the same numbers, a row per pair in the JSON
    result = run_cli("eval", root, "--split", "all", "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["epe"] == pytest.approx(chairs.epe, rel=1e-9) and report["layout"] == layout_name(name)
    assert [row["epe"] for row in report["samples"]] == pytest.approx([s.epe for s in chairs.samples], rel=1e-9)
    assert report["invalid_pixels"] == unknown
    assert "Fl-all" in result.stdout and f"{100 * chairs.fl_all:.2f}%" in result.stdout


def test_kitti_epe_moves_at_most_the_1_64_px_quantisation(trees, tmp_path):
    """Against the unquantised flows (same valid pixels): each pixel's error moves by at most the
    rounding of its true flow, |(du, dv)| <= sqrt(2) / 128 px, so the mean does too."""
    root, actual = trees["kitti"]
    unquantised_flows = [f for _, _, f in trees["chairs"][1]]  # the flows the KITTI tree was made from
    exact = [(a, b, np.where(np.abs(q) > 1e9, UNKNOWN, f)) for (a, b, q), f in zip(actual, unquantised_flows)]
    got = evaluate(root, split="all", warmup=0)
    unquantised = evaluate(build_chairs(tmp_path / "exact", exact), split="all", warmup=0)
    assert got.valid_pixels == unquantised.valid_pixels
    assert abs(got.epe - unquantised.epe) <= math.sqrt(2) / 128
    assert got.epe != unquantised.epe  # the quantisation is there


def test_sintel_final_pass_and_per_scene_results(trees, tmp_path, run_cli):
    root, actual = trees["sintel"]
    inverted = [(255 - a, 255 - b, flow) for a, b, flow in actual]
    final = evaluate(root, split="all", warmup=0, sintel_pass="final")
    assert final.epe == pytest.approx(evaluate(build_chairs(tmp_path / "inv", inverted), split="all", warmup=0).epe,
                                      rel=1e-9)
    assert "final pass" in final.source
    assert [(s.scene, s.pairs) for s in final.scenes] == [("alley_1", 2), ("bamboo_2", 3)]
    for scene in final.scenes:  # pixel-weighted over the scene's pairs
        rows = [s for s in final.samples if s.scene == scene.scene]
        assert scene.epe == pytest.approx(sum(r.epe * r.valid_pixels for r in rows) / sum(r.valid_pixels for r in rows))
        assert scene.valid_pixels == sum(r.valid_pixels for r in rows)
    assert [s.id for s in final.samples][:2] == ["alley_1/frame_0001", "alley_1/frame_0002"]
    result = run_cli("eval", root, "--split", "all", "--pass", "final", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert "per scene" in result.stdout and "bamboo_2" in result.stdout
    report = json.loads((tmp_path / "e.json").read_text())
    assert [row["scene"] for row in report["scenes"]] == ["alley_1", "bamboo_2"]
    assert report["scenes"][1]["epe"] == pytest.approx(final.scenes[1].epe)


def test_middlebury_sequences_without_ground_truth_are_skipped_with_a_warning(trees, run_cli):
    root, _ = trees["middlebury"]
    found = find_pairs(root)
    assert [s.id for s in found.samples] == list(MIDDLEBURY_SEQS)
    assert found.incomplete == ["Backyard: no ground truth (other-gt-flow/Backyard)"]
    assert [s.id for s in find_pairs(root, need_flow=False).samples] == ["Backyard", *MIDDLEBURY_SEQS]
    with pytest.raises(DataError, match="1 pairs skipped"):
        find_pairs(root, strict=True)


def test_the_list_file_itself_is_a_data_argument(trees, tmp_path):
    root, actual = trees["list"]
    by_file = evaluate(root / "pairs.txt", split="all", warmup=0)
    assert by_file.layout == "list" and by_file.epe == pytest.approx(evaluate(root, split="all", warmup=0).epe)
    assert [s.id for s in by_file.samples] == [f"frames_{i}a" for i in range(len(actual))]  # names, not paths


@pytest.mark.parametrize("name", ["flownet", "sintel", "kitti", "middlebury", "list"])
def test_predict_writes_one_flow_per_pair_equal_to_the_chairs_pairs_flows(name, trees, tmp_path, run_cli):
    root, actual = trees[name]
    chairs = build_chairs(tmp_path / "same", actual)
    assert run_cli("predict", chairs, "-o", tmp_path / "want").exit_code == 0
    result = run_cli("predict", root, "-o", tmp_path / "got")
    assert result.exit_code == 0, result.output
    found = find_pairs(root, need_flow=False)
    ids = [s.id for s in found.samples if s.flow is not None]  # the pairs the chairs tree holds
    written = sorted(p.relative_to(tmp_path / "got").as_posix() for p in (tmp_path / "got").rglob("*.flo"))
    assert written == sorted(f"{s.id}_flow.flo" for s in found.samples)  # one flow per pair
    for k, pair_id in enumerate(ids, 1):
        got = (tmp_path / "got" / f"{pair_id}_flow.flo").read_bytes()
        assert got == (tmp_path / "want" / f"{k:05d}_flow.flo").read_bytes()


def test_predict_needs_no_ground_truth(trees, tmp_path, run_cli):
    root = tmp_path / "sintel"
    shutil.copytree(trees["sintel"][0], root)
    shutil.rmtree(root / "training" / "flow")  # as Sintel's test half
    result = run_cli("predict", root, "-o", tmp_path / "out", "--pass", "final")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").rglob("*_flow.flo"))) == 5


def test_kitti_valid_bit_reaches_the_training_batches_and_train_runs(trees, tmp_path, run_cli):
    from flowcli.data.dataset import FlowDataset

    root, actual = trees["kitti"]
    found = find_pairs(root)
    item = FlowDataset(found.samples)[0]
    assert np.array_equal(item["valid"].numpy(), (np.abs(actual[0][2]) < 1e9).all(axis=2))  # the loss's mask
    result = run_cli("train", root, "-o", tmp_path / "run", "--epochs", 1, "--batch-size", 2, "--crop", "64x64",
                     "--width", 0.25, "--layout", "kitti", "--split", "seeded")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["layout"] == "kitti"


# bad input: one line, exit code 1, nothing written


def test_sintel_scene_without_its_flow_folder(trees, tmp_path, run_cli, assert_clean_failure, visible_files):
    root = tmp_path / "sintel"
    shutil.copytree(trees["sintel"][0], root)
    shutil.rmtree(root / "training" / "flow" / "bamboo_2")
    result = run_cli("eval", root, "--split", "all")
    assert_clean_failure(result, "Sintel ground truth training/flow/bamboo_2/frame_0001.flo is missing and 2 more files",
                         "(2 complete pairs found)", before=visible_files(tmp_path), folder=tmp_path)


def test_a_gap_in_a_sintel_scene_is_named_not_bridged(trees, tmp_path, run_cli, assert_clean_failure, visible_files):
    root = tmp_path / "sintel"
    shutil.copytree(trees["sintel"][0], root)
    frames = sorted((root / "training" / "clean" / "bamboo_2").iterdir())
    frames[1].unlink()  # frame 2: frame 1's flow is to it, not to frame 3
    result = run_cli("eval", root, "--split", "all")
    assert_clean_failure(result, f"Sintel frame training/clean/bamboo_2/{frames[1].name} is missing",
                         before=visible_files(tmp_path), folder=tmp_path)


def test_kitti_images_without_their_second_frame(trees, tmp_path, run_cli, assert_clean_failure, visible_files):
    root = tmp_path / "kitti"
    shutil.copytree(trees["kitti"][0], root)
    (root / "training" / "image_2" / "000002_11.png").unlink()
    result = run_cli("eval", root, "--split", "all")
    assert_clean_failure(result, "KITTI file training/image_2/000002_11.png is missing", "(4 complete pairs found)",
                         before=visible_files(tmp_path), folder=tmp_path)


def test_list_file_naming_missing_files(tmp_path, run_cli, assert_clean_failure, visible_files, make_pair):
    a, b = make_pair()
    (tmp_path / "pairs.txt").write_text(f"{a.name} {b.name}\nnone1.png none2.png\n")
    before = visible_files(tmp_path)
    assert_clean_failure(run_cli("predict", tmp_path / "pairs.txt", "-o", tmp_path / "out"),
                         "listed file none1.png is missing and 1 more files", "(1 complete pairs found)",
                         before=before, folder=tmp_path)
    assert_clean_failure(run_cli("eval", tmp_path / "pairs.txt", "--split", "all"),
                         "line 1 names no ground-truth flow", before=before, folder=tmp_path)


@pytest.mark.parametrize("command", ["eval", "train", "predict"])
def test_mixed_layouts_are_refused_naming_both(command, trees, tmp_path, run_cli, assert_clean_failure, visible_files):
    root = tmp_path / "mixed"
    shutil.copytree(trees["chairs"][0], root)
    shutil.copytree(trees["sintel"][0] / "training", root / "training")
    args = {"eval": ("--split", "all"), "train": ("-o", tmp_path / "run"), "predict": ("-o", tmp_path / "out")}[command]
    result = run_cli(command, root, *args)
    assert_clean_failure(result, "mixes two dataset layouts, Flying Chairs (00001_flow.flo) and MPI Sintel (training/clean/)",
                         "pass --layout chairs or --layout sintel", before=visible_files(tmp_path), folder=tmp_path)
    if command == "eval":  # forcing one resolves it
        assert run_cli(command, root, *args, "--layout", "sintel").exit_code == 0


def test_a_flow_folder_in_a_chairs_folder_does_not_make_it_sintel(trees, tmp_path):
    root = tmp_path / "chairs"
    shutil.copytree(trees["chairs"][0], root)
    (root / "flow").mkdir()  # e.g. `flowcli predict chairs -o chairs/flow`
    assert detect_layout(root) == "chairs"


@pytest.mark.parametrize("command", ["eval", "train", "predict"])
def test_a_forced_layout_that_does_not_match_is_one_line(command, trees, tmp_path, run_cli, assert_clean_failure,
                                                         visible_files):
    args = {"eval": ("--split", "all"), "train": ("-o", tmp_path / "run"), "predict": ("-o", tmp_path / "out")}[command]
    result = run_cli(command, trees["chairs"][0], *args, "--layout", "kitti")
    assert_clean_failure(result, "--layout kitti was asked for, but its files do not follow the KITTI layout (expected image_2/",
                         before=visible_files(tmp_path), folder=tmp_path)


def test_an_empty_folder_still_names_flying_chairs_and_the_other_layouts(tmp_path):
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: no Flying Chairs pairs found (expected <id>_img1.ppm")
    assert "nor another known layout (pass layout=NAME to force one of flownet, chairs2, sintel, kitti" in str(info.value)


def test_list_ids_are_names_so_flows_stay_inside_the_output_folder(tmp_path, run_cli, make_pair):
    # images beside the list, above it (../) and by absolute path: every flow lands in -o
    (tmp_path / "data").mkdir()
    (tmp_path / "lists").mkdir()
    above = make_pair(folder=tmp_path / "data", name="up")
    absolute = make_pair(folder=tmp_path / "data", name="abs", seed=1)
    (tmp_path / "lists" / "pairs.txt").write_text(
        f"../data/{above[0].name} ../data/{above[1].name}\n{absolute[0]} {absolute[1]}\n")
    result = run_cli("predict", tmp_path / "lists" / "pairs.txt", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*_flow.flo"))
    absolute_id = "_".join(absolute[0].with_suffix("").parts[1:])  # '/tmp/x/abs_img1.ppm' -> 'tmp_x_abs_img1'
    assert written == sorted(["out/data_up_img1_flow.flo", f"out/{absolute_id}_flow.flo"])
