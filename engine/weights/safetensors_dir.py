"""Hugging Face safetensors checkpoints: one file, or shards named by model.safetensors.index.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open

from ..errors import ModelLoadError

INDEX_NAME = "model.safetensors.index.json"

# (name, full shape) -> the index of the part to read, None for the whole tensor
# (a tensor-parallel rank's ShardSelector).
Selector = Callable[[str, tuple[int, ...]], "tuple[slice, ...] | None"]


def safetensors_files(model_dir: Path) -> list[Path]:
    """The shard files of `model_dir`, each checked to exist."""
    index = model_dir / INDEX_NAME
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{index} is malformed: {e}") from None
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise ModelLoadError(f"missing shard(s) {', '.join(missing)} listed in {index}")
        return [model_dir / s for s in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors weights in {model_dir}")
    return files


def count_safetensors(files: list[Path]) -> int:
    total = 0
    for path in files:
        with _open(path) as f:
            total += len(f.keys())
    return total


def iter_safetensors(files: list[Path], select: Selector | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) from memory-mapped files, one tensor at a time; with `select`,
    only the part of each tensor it names is read from the file."""
    for path in files:
        with _open(path) as f:
            for name in f.keys():
                try:
                    index = None
                    if select is not None:
                        part = f.get_slice(name)
                        index = select(name, tuple(part.get_shape()))
                    yield name, f.get_tensor(name) if index is None else part[index]
                except SafetensorError as e:
                    raise ModelLoadError(f"{path.name}: cannot read tensor {name!r}: {e}") from None


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as e:
        raise ModelLoadError(f"{path} is not a readable safetensors file: {e}") from None
