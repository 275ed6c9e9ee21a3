"""The files of a saved model folder: what `refinery_quaterion.train.save` must write and `load` must find.

`label_map_to_save` checks the label map given to ``save`` against the model (its number of
classes, the labels it was trained on). `read_model_folder` checks a folder before quaterion
loads it, so that a damaged file is reported by name (a `ModelFileError`) instead of a
traceback from deep inside json, torch or safetensors: every JSON file must parse, every
weights file must be complete (safetensors: the header's tensors fit in the file; torch zip
files: the central directory is readable), ``label_map.json`` must be present in a folder
written by ``save`` and agree with ``training_config.json``. A folder written by plain
quaterion (no ``training_config.json``) loads with a warning naming the missing files.
"""

from __future__ import annotations

import json
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

from refinery_quaterion.dataset import LabelMap
from refinery_quaterion.inference import ModelFileError

__all__ = ["CONFIG_FILE", "LABEL_MAP_FILE", "label_map_to_save", "read_model_folder"]

LABEL_MAP_FILE = "label_map.json"
CONFIG_FILE = "training_config.json"
_SERVABLE_FILE = "config.json"
_TORCH_SUFFIXES = (".bin", ".pt", ".pth")


def label_map_to_save(model: Any, label_map: LabelMap | None) -> LabelMap:
    """The label map ``save`` writes for ``model``: ``label_map``, checked, or the one the model knows.

    Raises:
        TypeError: If ``label_map`` is not a `LabelMap`.
        ValueError: If there is no label map, or it does not match the model's number of classes
            (``num_groups``) or the labels the model was trained on; the message names both counts.
    """
    if label_map is not None and not isinstance(label_map, LabelMap):
        raise TypeError(f"label_map must be a LabelMap, got {type(label_map).__name__}")
    known: LabelMap | None = getattr(model, "label_map", None)
    if label_map is None:
        if known is None:
            raise ValueError("save needs the labels the model was trained on: pass "
                             "label_map=train_dataset.label_map")
        label_map = known
    config = getattr(model, "model_config", None)
    num_groups = getattr(config, "num_groups", None)
    if num_groups is not None and len(label_map) != num_groups:
        loss = getattr(config, "loss", "the loss")
        raise ValueError(f"label_map has {len(label_map)} labels but the model classifies {num_groups} "
                         f"(num_groups={num_groups}, loss {loss!r}); pass the label map of its training data")
    if known is not None and known.names != label_map.names:
        raise ValueError(f"label_map has {len(label_map)} labels {label_map.names} but the model was trained on "
                         f"{len(known)} labels {known.names}; pass the label map of its training data")
    return label_map


def read_model_folder(path: Path) -> tuple[dict[str, Any], LabelMap | None]:
    """Check the files of a saved model folder; return its ``training_config.json`` and label map.

    Returns:
        ``(config, label_map)``: the parsed ``training_config.json`` (empty for a plain quaterion
        folder) and the `LabelMap` (``None`` when the folder has none).

    Raises:
        FileNotFoundError: If ``path`` has no ``config.json`` (not a saved model folder).
        ModelFileError: If a file is empty, truncated or malformed, or ``label_map.json`` is
            missing from a folder written by ``save``.
    """
    if not (path / _SERVABLE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no {_SERVABLE_FILE}); expected a folder "
                                "written by refinery_quaterion.train.save")
    parsed: dict[Path, Any] = {}
    for file in sorted(path.rglob("*")):
        if not file.is_file() or any(part.startswith(".") for part in file.relative_to(path).parts):
            continue
        if file.suffix == ".json":
            parsed[file] = _read_json(file)
        elif file.suffix == ".safetensors":
            _check_safetensors(file)
        elif file.suffix in _TORCH_SUFFIXES:
            _check_torch_file(file)
    if not isinstance(parsed[path / _SERVABLE_FILE], dict):
        raise ModelFileError(path / _SERVABLE_FILE, "is not a JSON object; expected quaterion's model config")
    config_file, label_file = path / CONFIG_FILE, path / LABEL_MAP_FILE
    if config_file not in parsed:
        missing = [CONFIG_FILE] + ([] if label_file.is_file() else [LABEL_MAP_FILE])
        warnings.warn(f"{path} has no {' or '.join(missing)}: not a folder written by refinery_quaterion.save "
                      "(plain quaterion?); its training settings"
                      + (" and labels are" if LABEL_MAP_FILE in missing else " are") + " unknown",
                      UserWarning, stacklevel=3)
        config: dict[str, Any] = {}
    else:
        config = parsed[config_file]
        if not isinstance(config, dict):
            raise ModelFileError(config_file, f"holds a JSON {type(config).__name__}; expected an object")
    labels = config.get("labels")
    if not label_file.is_file():
        if config and labels is not None:
            raise ModelFileError(label_file, f"is missing; {CONFIG_FILE} lists {len(labels)} labels, so the folder "
                                             "is incomplete (save the model again)")
        if config:  # written by an older save without a label map
            warnings.warn(f"{path} has no {LABEL_MAP_FILE} (saved without a label map): label_map is None",
                          UserWarning, stacklevel=3)
        return config, None
    try:
        label_map = LabelMap.load(label_file)
    except (TypeError, ValueError, KeyError) as err:
        detail = str(err).removeprefix(f"{label_file}: ")
        raise ModelFileError(label_file, f"is not a label map: {detail}") from err
    if isinstance(labels, list) and [str(x) for x in labels] != label_map.names:
        raise ModelFileError(label_file, f"holds {len(label_map)} labels {label_map.names} but {CONFIG_FILE} lists "
                                         f"{len(labels)} labels {labels}")
    return config, label_map


def _read_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ModelFileError(file, f"is not UTF-8 text: {err}") from err
    if not text.strip():
        raise ModelFileError(file, "is empty; expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFileError(file, f"is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                                   "the file is damaged or truncated") from err


def _check_safetensors(file: Path) -> None:
    """A safetensors file is complete: its header parses and every tensor's bytes are in the file."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(file, f"is truncated ({size} bytes); expected a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise ModelFileError(file, f"is truncated: its header needs {length} bytes, the file has {size - 8} "
                                       "after the length field")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelFileError(file, f"has a damaged safetensors header: {err}") from err
    if not isinstance(header, dict):
        raise ModelFileError(file, "has a damaged safetensors header (not a JSON object)")
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise ModelFileError(file, f"is truncated: {size} bytes, its tensors need {needed}")


def _check_torch_file(file: Path) -> None:
    """A torch file is complete: empty files are refused, zip-format files need a readable directory."""
    size = file.stat().st_size
    if size == 0:
        raise ModelFileError(file, "is empty; expected torch weights")
    with open(file, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # the legacy pickle format has no directory to check; torch.load tells
        return
    try:
        with zipfile.ZipFile(file) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFileError(file, f"is truncated or damaged ({err}); expected torch weights") from err
