"""The uniform average of weights files of one network (a "model soup" of fine-tunes along one line,
e.g. two training stages' last epochs), with the first file's metadata (less what described its own
epoch: `epoch`, `val_epe`) and dtypes.

    python benchmarks/average_weights.py runs/stage13/last.safetensors runs/stage14/last.safetensors -o avg.safetensors

Averaging only makes sense for files of one architecture whose BatchNorm statistics agree (fine-tunes
with --freeze-bn from one file); the files must hold the same tensors and the same architecture
(`config`, which also holds what tensor shapes do not show: flow scale, mean subtraction), else
nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flowcli.io import atomic_path


def average(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    metadata: dict[str, str] = {}
    for index, path in enumerate(paths):
        with safe_open(path, "pt") as f:
            if index == 0:
                metadata = dict(f.metadata() or {})
                names = set(f.keys())
            elif set(f.keys()) != names:
                raise SystemExit(f"{path}: holds other tensors than {paths[0]}")
            elif (f.metadata() or {}).get("config") != metadata.get("config"):
                raise SystemExit(f"{path}: another architecture (config) than {paths[0]}")
            for name in f.keys():
                tensor = f.get_tensor(name)
                dtypes.setdefault(name, tensor.dtype)
                sums[name] = sums.get(name, 0) + tensor.double()  # float64: the order of the files does not matter
    out = {}
    for name, total in sums.items():
        mean = total / len(paths)
        out[name] = (mean if dtypes[name].is_floating_point else mean.round()).to(dtypes[name]).contiguous()
    return out, {k: v for k, v in metadata.items() if k not in ("epoch", "val_epe")}  # the first file's own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    options = parser.parse_args()
    if len(options.files) < 2:
        raise SystemExit("give at least two files to average")
    if options.output.exists():
        raise SystemExit(f"{options.output}: already exists")
    tensors, metadata = average(options.files)
    with atomic_path(options.output) as tmp:  # an interrupted write leaves no file to refuse the rerun
        save_file(tensors, tmp, metadata={**metadata, "averaged_from": " ".join(map(str, options.files))})
    print(f"wrote {options.output}: the mean of {len(options.files)} files")


if __name__ == "__main__":
    main()
