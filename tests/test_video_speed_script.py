"""benchmarks/video_speed.py: a tiny clip goes through `flowcli predict` in a child process, and the
peak memory reported is the child's own, not the larger one of the process that spawned it."""

from __future__ import annotations

import numpy as np
import pytest


def test_the_peak_reported_is_flowclis_not_the_spawning_process(load_benchmark, tmp_path):
    pytest.importorskip("av", reason='PyAV is not installed (pip install -e ".[video]")')
    script = load_benchmark("video_speed")
    clip = tmp_path / "clip.mp4"
    script.write_clip(clip, 4, 64, 64)
    block = np.ones(2**30 // 8)  # this process peaks at >= 1 GiB, then frees it; Linux's ru_maxrss
    block += 1                   # would carry that peak into the child it spawns
    del block
    row = script.run_predict(clip, tmp_path / "flows", ["--weights", "random"], profile=False)
    assert row["line"].startswith("wrote 3 flows to ")
    assert len(list((tmp_path / "flows").glob("*.flo"))) == 3
    assert 50 < row["peak_rss_mb"] < 900  # torch and a tiny network: a few hundred MB
