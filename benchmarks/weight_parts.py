"""Split a weights file into parts of at most N MiB (the device tool returns files of <= 16 MiB), or
join such parts back into one file. Floating-point tensors are stored in fp16 when the whole file in
its own precision would not fit one part; the metadata (architecture, width) goes with every part.

    python benchmarks/weight_parts.py split runs/x/best.safetensors OUT_DIR --limit-mib 16
    python benchmarks/weight_parts.py join OUT_DIR/best.part*.safetensors -o best.safetensors
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


PART = "weight_parts"  # each part's metadata: "i/n", so that join can tell a set is whole


def split(source: Path, out_dir: Path, limit_mib: float) -> list[Path]:
    limit = int(limit_mib * (1 << 20)) - (1 << 16)  # headroom for each part's header
    with safe_open(source, "pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if os.path.getsize(source) > limit:
        tensors = {k: t.half() if t.is_floating_point() else t for k, t in tensors.items()}
    parts: list[dict] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > limit:
            raise SystemExit(f"{source}: {name} alone is {nbytes / 2**20:.1f} MiB, over the {limit_mib:g} MiB limit")
        if parts[-1] and size + nbytes > limit:
            parts.append({})
            size = 0
        parts[-1][name] = tensor.contiguous()
        size += nbytes
    for stale in out_dir.glob(f"{source.stem}.part*.safetensors"):  # an earlier split's would join too
        stale.unlink()
    paths = []
    for i, part in enumerate(parts, 1):
        path = out_dir / f"{source.stem}.part{i}.safetensors"
        save_file(part, path, metadata={**metadata, PART: f"{i}/{len(parts)}"})
        paths.append(path)
    return paths


def join(parts: list[Path], output: Path) -> None:
    tensors, metadata, seen = {}, None, set()
    for part in parts:
        with safe_open(part, "pt") as f:
            meta = dict(f.metadata() or {})
            index = meta.pop(PART, None)
            if index is None or index in seen:
                raise SystemExit(f"{part}: {'a part given twice' if index else 'not a part of a split file'}")
            seen.add(index)
            if metadata is not None and meta != metadata:
                raise SystemExit(f"{part}: from another file than {parts[0]}")
            metadata = meta
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    count = int(next(iter(seen)).split("/")[1])
    if seen != {f"{i}/{count}" for i in range(1, count + 1)}:
        raise SystemExit(f"{len(seen)} of {count} parts given")
    save_file(tensors, output, metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("split")
    s.add_argument("source", type=Path)
    s.add_argument("out_dir", type=Path)
    s.add_argument("--limit-mib", type=float, default=16)
    j = commands.add_parser("join")
    j.add_argument("parts", type=Path, nargs="+")
    j.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        for path in split(args.source, args.out_dir, args.limit_mib):
            print(path, os.path.getsize(path))
    else:
        join(args.parts, args.output)


if __name__ == "__main__":
    main()
