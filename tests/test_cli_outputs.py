"""What every command does with the files it writes: an existing file is replaced only with
--overwrite, an input never; two inputs never write one output; and the system's own failures (a
name too long, a reader gone from the pipe, a name that is not UTF-8) end as one line or quietly,
never as a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowcli.io import write_flo

REPO = Path(__file__).resolve().parents[1]


def test_an_existing_output_is_replaced_only_with_overwrite_in_every_command(run_cli, make_pair, tmp_path):
    a, b = make_pair(32, 48)
    write_flo(tmp_path / "f.flo", np.ones((32, 48, 2), np.float32))
    commands = {  # each command's own way of writing a file the user named
        "predict": ["predict", a, b, "-w", "random", "-o"],
        "predict --mask": ["predict", a, b, "-w", "random", "-o", tmp_path / "new.flo", "--mask"],
        "visualize": ["visualize", tmp_path / "f.flo", "-o"],
        "visualize --pair": ["visualize", "--pair", a, b, "-w", "random", "-o"],
        "eval --json": ["eval", "-w", "random", "--count", "1", "--json"],
        "bench --json": ["bench", "-w", "random", "--size", "64x64", "--runs", "1", "--json"],
    }
    for name, args in commands.items():
        kept = tmp_path / ("kept.json" if "json" in name else "kept.png")
        kept.write_bytes(b"a finished file")
        result = run_cli(*args, kept)
        assert result.exit_code == 1 and result.stderr == f"error: {kept}: already exists (pass --overwrite to replace it)\n", name
        assert kept.read_bytes() == b"a finished file", name
        result = run_cli(*args, kept, "--overwrite")
        assert result.exit_code == 0, (name, result.output)
        assert kept.read_bytes() != b"a finished file", name
        if "json" in name:
            json.loads(kept.read_text())
        (tmp_path / "new.flo").unlink(missing_ok=True)


def test_an_output_that_names_an_input_is_refused_even_with_overwrite(run_cli, make_pair, tmp_path):
    a, b = make_pair(32, 48)
    os.link(b, tmp_path / "same_as_b.ppm")  # another name of the same file (as B.PPM is where case is ignored)
    before = b.read_bytes(), a.read_bytes()
    for args in (["predict", a, b, "-w", "random", "-o", b], ["predict", a, b, "-w", "random", "-o", tmp_path / "x.flo",
                                                              "--confidence", a],
                 ["visualize", "--pair", a, b, "-w", "random", "-o", a],
                 ["eval", "-w", a, "--json", a]):
        for overwrite in ([], ["--overwrite"]):  # the reason given is the input, with or without it
            result = run_cli(*args, *overwrite)
            named = args[-1]
            assert result.exit_code == 1 and result.stderr == f"error: {named}: is also an input ({named}); name another output\n"
    result = run_cli("predict", a, b, "-w", "random", "-o", tmp_path / "same_as_b.ppm", "--overwrite")
    assert result.exit_code == 1 and f"is also an input ({b})" in result.stderr
    assert (b.read_bytes(), a.read_bytes()) == before and not (tmp_path / "x.flo").exists()


def test_predictions_never_go_into_the_dataset_folder_whose_flows_are_its_ground_truth(run_cli, make_chairs_folder,
                                                                                      tmp_path):
    folder = make_chairs_folder(tmp_path / "chairs", n=2, size=(32, 48))
    truth = (folder / "00001_flow.flo").read_bytes()
    for name in ("00001_img1.ppm", "00001_img2.ppm"):  # macOS's ._ files: no pairs
        (folder / f"._{name}").write_bytes(b"\0\5\x16\x07")
    result = run_cli("predict", folder, "-o", folder, "-w", "random", "--overwrite")
    assert result.exit_code == 1 and result.stderr == (f"error: {folder}: is the dataset folder, whose <id>_flow.* are "
                                                       "its ground truth; write the predictions to another folder\n")
    assert (folder / "00001_flow.flo").read_bytes() == truth
    result = run_cli("predict", folder, "-o", tmp_path / "flows", "-w", "random")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == ["00001_flow.flo", "00002_flow.flo"]


def test_a_video_output_is_never_its_input_and_replaces_a_video_only_with_overwrite(run_cli, make_video, tmp_path):
    make_video(tmp_path / "clip.mkv", count=3, size=(32, 48))
    before = (tmp_path / "clip.mkv").read_bytes()
    result = run_cli("predict", tmp_path / "clip.mkv", "-o", tmp_path / "clip.mkv", "-w", "random", "--overwrite")
    assert result.exit_code == 1 and "is also an input" in result.stderr
    assert (tmp_path / "clip.mkv").read_bytes() == before
    (tmp_path / "flow.mkv").write_bytes(b"last week's flow video")
    result = run_cli("predict", tmp_path / "clip.mkv", "-o", tmp_path / "flow.mkv", "-w", "random")
    assert result.exit_code == 1 and result.stderr.endswith("flow.mkv: already exists (pass --overwrite to replace it)\n")
    assert (tmp_path / "flow.mkv").read_bytes() == b"last week's flow video"
    result = run_cli("predict", tmp_path / "clip.mkv", "-o", tmp_path / "flow.mkv", "-w", "random", "--overwrite")
    assert result.exit_code == 0, result.output


def test_two_frames_that_would_write_one_flow_are_refused_before_any_work(run_cli, make_pair, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    a, b = make_pair(32, 48, folder=frames, name="f")  # f_img1.ppm, f_img2.ppm
    (frames / "f_img1.png").write_bytes(a.read_bytes())  # the same stem in another format
    result = run_cli("predict", frames, "--sequence", "-o", tmp_path / "flows", "-w", "random")
    assert result.exit_code == 1
    assert result.stderr == f"error: {frames}: two inputs would both be written as f_img1_flow.flo; rename one of them\n"
    assert not (tmp_path / "flows").exists()


def test_a_name_too_long_for_the_system_is_one_line(run_cli, make_pair, tmp_path):
    a, b = make_pair(32, 48)
    result = run_cli("predict", a, b, "-w", "random", "-o", tmp_path / ("a" * 300 + ".flo"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "File name too long" in result.stderr
    assert "Traceback" not in result.output


def test_a_reader_gone_from_the_pipe_ends_the_command_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `flowcli info | head -0`: nobody reads what it prints
    try:
        result = subprocess.run([sys.executable, "-m", "flowcli", "info"], cwd=REPO, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""  # rich's console stops quietly, with exit code 1


@pytest.mark.skipif(sys.platform == "win32", reason="file names are bytes on POSIX only")
def test_a_file_name_that_is_not_utf8_is_written_and_printed_escaped(make_pair, tmp_path):
    a, b = make_pair(32, 48)
    output = os.fsencode(tmp_path) + b"/\xe9t\xe9.flo"  # Latin-1 bytes: not UTF-8
    result = subprocess.run([sys.executable, "-m", "flowcli", "predict", a, b, "-w", "random", "-o", output],
                            cwd=REPO, capture_output=True, timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    assert os.path.exists(output)
    assert result.stdout.startswith(b"wrote " + os.fsencode(tmp_path) + b"/\\udce9t\\udce9.flo (32x48")
