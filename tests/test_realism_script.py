"""benchmarks/realism.py (generated vs real scenes, as seen by OpenCV DIS); skipped without OpenCV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_realism_script_rows_share_scenes_and_differ_only_by_their_setting(tmp_path, shared_fixtures):
    pytest.importorskip("cv2", reason="OpenCV is not a flowcli dependency (pip install opencv-python-headless)")
    out = tmp_path / "realism.json"
    cmd = [sys.executable, "benchmarks/realism.py", "--count", "2", "--data", str(shared_fixtures), "--json", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| generated (flowcli defaults) | 2 |" in result.stdout
    rows = json.loads(out.read_text())["results"]
    defaults = rows["generated (flowcli defaults)"]
    backgrounds = rows["generated, any texture as background"]
    public = rows["generated, public generator's motion ranges"]
    # Same seeded scenes: changing only the background textures leaves every motion as it was.
    assert backgrounds["zero"] == pytest.approx(defaults["zero"], rel=1e-9)
    assert public["zero"] != pytest.approx(defaults["zero"], rel=1e-3)
    assert 0 < defaults["fg_share"] < 1 and defaults["dis"] > 0
    real = rows[f"real: {shared_fixtures}"]
    assert real["pairs"] == 1 and real["zero"] == pytest.approx(1.783, abs=1e-3)  # the 50x50 pair's mean flow
