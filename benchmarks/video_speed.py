"""End-to-end speed and peak memory of `flowcli predict VIDEO`.

Writes a synthetic H.264 clip (a textured scene panning and zooming; yuv420p, as cameras record) of
the size and length asked, then runs `flowcli predict CLIP -o OUT ...` in a fresh process, as a user
would, and reports: frames/s end to end as the command prints it (decode, network, write; the model
load excluded), the wall time of the whole process, and the process's peak RSS.

    python benchmarks/video_speed.py --size 720x1280 --frames 120 --args "--max-side 640"
    python benchmarks/video_speed.py --size 96x128 --frames 1000,10000 --out-kind mp4   # memory over length
    python benchmarks/video_speed.py --size 720x1280 --frames 120 --args "--max-side 640" --profile

Thread count: torch's default unless OMP_NUM_THREADS is set (the command's own default).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_clip(path: Path, frames: int, height: int, width: int, rate: int = 30) -> None:
    """A scene that pans 3 px and zooms slowly each frame: real motion for the network, cheap to make."""
    import av

    rng = np.random.default_rng(0)
    pad = 64
    texture = rng.integers(0, 256, ((height + 2 * pad) // 8 + 1, (width + 2 * pad + 3 * frames) // 8 + 1, 3),
                           dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    y, x = np.mgrid[0:texture.shape[0], 0:texture.shape[1]]
    texture = (0.6 * texture + 0.4 * (127 + 100 * np.sin(x / 13)[..., None] * np.cos(y / 17)[..., None])).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for t in range(frames):
            left = (3 * t) % (texture.shape[1] - width - 1)
            image = np.ascontiguousarray(texture[pad:pad + height, left:left + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


# runs `python -m flowcli ...` and, at exit, prints the process's own peak RSS (KB) to stderr: VmHWM,
# not ru_maxrss, which Linux carries across exec from the process that spawned it (this script, whose
# 10,000-frame clip made it the larger: 567 MB reported for a flowcli that peaked at 307)
CHILD = ("import atexit, resource, runpy, sys\n"
         "def peak():\n"
         "    try:\n"
         "        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
         "    except (OSError, StopIteration):\n"
         "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
         "atexit.register(lambda: print('PEAK_RSS_KB', peak(), file=sys.stderr))\n"
         "sys.argv = ['flowcli', *sys.argv[1:]]; runpy.run_module('flowcli', run_name='__main__')")


def run_predict(clip: Path, out: Path, args: list[str], profile: bool) -> dict:
    """`flowcli predict` in a child process; its printed line, wall time and peak RSS (MB)."""
    command = [sys.executable, "-c", CHILD, "predict", str(clip), "-o", str(out), *args]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-s", "cumtime", "-m", "flowcli", "predict", str(clip),
                   "-o", str(out), *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr.strip() or done.stdout.strip())
    line = next(line for line in done.stdout.splitlines() if line.startswith("wrote "))
    if profile:
        print("\n".join(done.stdout.splitlines()[:60]))
    peak = [int(l.split()[1]) for l in done.stderr.splitlines() if l.startswith("PEAK_RSS_KB")]
    return {"line": line, "wall_s": round(wall, 2), "peak_rss_mb": round(peak[0] / 1024, 1) if peak else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="720x1280", help="HEIGHTxWIDTH of the clip")
    parser.add_argument("--frames", default="120", help="clip lengths, comma-separated (one run each)")
    parser.add_argument("--args", default="--max-side 640", help="extra options for flowcli predict")
    parser.add_argument("--out-kind", choices=["folder", "mp4"], default="folder", help="flows to a folder or a video")
    parser.add_argument("--profile", action="store_true", help="print the child's cProfile top entries")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    options = parser.parse_args()
    height, width = (int(v) for v in options.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="flowcli-video-bench-") as tmp:
        for count in (int(v) for v in options.frames.split(",")):
            clip = Path(tmp) / f"clip{count}.mp4"
            write_clip(clip, count, height, width)
            out = Path(tmp) / (f"flows{count}.mp4" if options.out_kind == "mp4" else f"flows{count}")
            row = run_predict(clip, out, shlex.split(options.args), options.profile)
            row.update(frames=count, size=options.size, args=options.args, out_kind=options.out_kind,
                       omp_threads=os.environ.get("OMP_NUM_THREADS", "torch default"))
            rows.append(row)
            print(json.dumps(row), flush=True)
            subprocess.run(["rm", "-rf", str(out), str(clip)])  # a 10,000-frame folder of flows is large
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
