"""GGUF files: open one (memory-mapped, every tensor checked to lie inside it) and read its
key/value metadata as plain Python values.

What the metadata and tensors become is elsewhere in this folder: `gguf_config` builds a
`ModelConfig`, `gguf_tensors` yields HF-named tensors. The `llama`, `qwen2` and `qwen3` GGUF
architectures are read (SmolLM2, Llama, Mistral and Codestral, IQuestCoder, Qwen2.5-Coder and
Qwen3 as llama.cpp converts them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType, ReaderField

from ..errors import ModelLoadError

# -- opening ----------------------------------------------------------------------


def open_gguf(path: str | os.PathLike[str]) -> GGUFReader:
    """Open a GGUF file (memory-mapped) and check that every tensor lies inside it."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ModelLoadError(f"GGUF file {path} {what}")
    try:
        reader = GGUFReader(path)
    except OSError as e:
        raise ModelLoadError(f"cannot read GGUF file {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the reader fails in many ways on bad bytes
        raise ModelLoadError(f"GGUF file {path} is truncated or corrupt: {type(e).__name__}: {e}") from None
    _check_tensor_extents(reader, path)
    return reader


def _check_tensor_extents(reader: GGUFReader, path: Path) -> None:
    size = path.stat().st_size
    for t in reader.tensors:
        end = t.data_offset + t.n_bytes
        if end > size:
            raise ModelLoadError(
                f"GGUF file {path} is truncated or corrupt: tensor {t.name!r} ends at byte {end}, "
                f"past the end of the file ({size} bytes)"
            )


# -- metadata ---------------------------------------------------------------------


def read_gguf_metadata(reader: GGUFReader) -> dict[str, Any]:
    """Every key/value field as plain Python values (str, int, float, bool, or lists of them).

    The reader's own header entries (`GGUF.version`, `GGUF.tensor_count`,
    `GGUF.kv_count`) are not key/value fields and are left out. float32 values come back as
    the shortest decimal that rounds to them (1e-05, not 9.99999974738e-06), which is what
    config.json holds. The reader flattens nested arrays; so does this.
    """
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = _decode_field(field)
        except UnicodeDecodeError as e:
            raise ModelLoadError(f"GGUF metadata {key!r} holds a string that is not UTF-8: {e}") from None
    return meta


def _decode_field(field: ReaderField) -> Any:
    kind = field.types[0]
    if kind != GGUFValueType.ARRAY:
        return _decode_values(field, kind)[0]
    if len(field.types) == 1:  # an empty array: the reader records no element type
        return []
    return _decode_values(field, field.types[-1])


def _decode_values(field: ReaderField, leaf: GGUFValueType) -> list[Any]:
    """The values at `field.data`: each index names one part (an ndarray view of the file)."""
    parts = [field.parts[i] for i in field.data]
    if leaf == GGUFValueType.STRING:
        # A string part is the uint8 bytes after its u64 length.
        return [p.tobytes().decode("utf-8") for p in parts]
    if not parts:
        return []
    values = np.concatenate(parts)
    if leaf == GGUFValueType.FLOAT32:
        return [float(str(v)) for v in values]  # numpy prints the shortest round-trip form
    return values.tolist()


def gguf_architecture(reader: GGUFReader) -> str:
    """The file's `general.architecture`, or "" when it has none."""
    field = reader.get_field("general.architecture")
    return "" if field is None else str(_decode_field(field))
