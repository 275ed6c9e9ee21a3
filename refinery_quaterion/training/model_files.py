"""A trained model on disk: `save` writes the folder atomically, `load` reads it back.

`save` writes the trained model (quaterion servable + label map + ``training_config.json``
with the `ModelConfig` and `FitConfig`) atomically; `load` reads it back as an
`EmbeddingModel`, in any process, without network, and names the file when one is damaged
(`ModelFileError`).

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

import contextlib
import hashlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from refinery_quaterion import _compat  # noqa: F401  (quaterion shims: before quaterion is imported)

# isort: split
import torch
from quaterion_models import SimilarityModel

from refinery_quaterion._io import atomic_dir, atomic_write_text
from refinery_quaterion._util import to_jsonable
from refinery_quaterion.data.dataset import LabelMap
from refinery_quaterion.model.cache import EmbeddingCache
from refinery_quaterion.model.inference import EmbeddingModel, ModelFileError
from refinery_quaterion.model.pretrained import quiet_transformers
from refinery_quaterion.model.trainable import DistilBertSimilarityModel
from refinery_quaterion.training._guards import TrainedModelError, weights_problem

__all__ = ["CONFIG_FILE", "LABEL_MAP_FILE", "MANIFEST_FILE", "ModelFileError", "label_map_to_save", "load",
           "read_model_folder", "save"]

_FORMAT = 3  # 1: before ModelConfig/FitConfig; 2: + "fit"; 3: "template" (was "text"), one seed (ModelConfig)

LABEL_MAP_FILE = "label_map.json"
CONFIG_FILE = "training_config.json"
MANIFEST_FILE = "manifest.json"
"""Every other file of a saved folder with its size and SHA-256, written last by `save`, checked by `load`."""
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
        ModelFileError: If a file is empty, truncated or malformed, ``label_map.json`` is
            missing from a folder written by ``save``, a file listed in its ``manifest.json`` is
            missing or changed (`check_manifest`), or the folder is a sentence-transformers export.
    """
    config, label_map = _read_model_files(path)
    check_manifest(path)  # after the checks by format, which say more about a damaged file
    return config, label_map


def _read_model_files(path: Path) -> tuple[dict[str, Any], LabelMap | None]:
    if (path / "modules.json").is_file() and not (path / CONFIG_FILE).is_file():
        raise ModelFileError(path, "is a sentence-transformers folder (it has modules.json), not a model saved by "
                                   "refinery_quaterion; load it with sentence_transformers.SentenceTransformer, or "
                                   "pass the folder written by train")
    if not (path / _SERVABLE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no {_SERVABLE_FILE}); expected a folder "
                                "written by refinery_quaterion.training.model_files.save")
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


def _model_files(folder: Path) -> list[Path]:
    """The files of a model folder (not hidden ones, not the manifest), sorted."""
    return sorted(file for file in folder.rglob("*") if file.is_file() and file.name != MANIFEST_FILE
                  and not any(part.startswith(".") for part in file.relative_to(folder).parts))


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Write `MANIFEST_FILE`: the size and SHA-256 of every file of ``folder``."""
    files = {file.relative_to(folder).as_posix(): {"size": file.stat().st_size, "sha256": _sha256(file)}
             for file in _model_files(folder)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"format": 1, "files": files}, indent=1) + "\n", encoding="utf-8")


def check_manifest(folder: Path) -> None:
    """Check the files of ``folder`` against its `MANIFEST_FILE` (a folder without one passes).

    Raises:
        ModelFileError: Naming the files that are missing, or whose size or content changed.
    """
    manifest_file = folder / MANIFEST_FILE
    if not manifest_file.is_file():
        return
    manifest = _read_json(manifest_file)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ModelFileError(manifest_file, "has no 'files' object; save the model again")
    missing, changed = [], []
    for name, facts in files.items():
        file = folder / name
        if not file.is_file():
            missing.append(name)
        elif not isinstance(facts, dict) or file.stat().st_size != facts.get("size") \
                or _sha256(file) != facts.get("sha256"):
            changed.append(name)
    if missing or changed:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + \
                ([f"changed since it was saved: {', '.join(changed)}"] if changed else [])
        raise ModelFileError(folder, f"is incomplete or damaged ({'; '.join(parts)}); save or copy the model again")


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


def save(
    model: DistilBertSimilarityModel | EmbeddingModel,
    path: str | os.PathLike,
    *,
    label_map: LabelMap | None = None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    allow_interrupted: bool = False,
) -> Path:
    """Write a trained model to a folder, atomically.

    The folder holds the quaterion servable (``config.json``, ``head/``, ``encoders/`` -- so
    ``quaterion_models.SimilarityModel.load`` reads it too), ``label_map.json`` and
    ``training_config.json``: ``format`` (3), ``created``, library ``versions``, ``model``
    (`ModelConfig.to_dict` plus ``model_type``, ``raw_dim`` and ``dim``), ``fit``
    (`FitConfig.to_dict`), ``training`` (what `fit` did), ``labels`` and ``extra``.
    Everything is written to a temporary folder beside ``path`` and swapped into place at the
    end, so ``path`` holds the complete old or the complete new model at every instant.

    Args:
        model: A trained `DistilBertSimilarityModel` (or a loaded `EmbeddingModel`).
        path: Target folder.
        label_map: The labels the model was trained on (``train_dataset.label_map``);
            ``None`` takes the model's own (``model.label_map``, set by `fit` and `load`).
        overwrite: Replace an existing folder; otherwise an existing ``path`` is refused.
        extra: More JSON-serialisable facts to keep in ``training_config.json``.
        allow_interrupted: Save a model whose last `fit` was interrupted (its
            ``training_config.json`` then says so); refused by default.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is false.
        TrainedModelError: A ``ValueError``: if the model's last `fit` diverged, or its weights
            hold NaN or infinite values.
        ValueError: If the model's last `fit` was interrupted (unless ``allow_interrupted``);
            if there is no label map, or it does not match the model (its number of labels
            ``num_groups``, or the labels `fit` trained it on: the message names both
            counts); or if the text template is a callable that cannot be re-imported.
    """
    if not isinstance(model, (DistilBertSimilarityModel, EmbeddingModel)):
        raise TypeError(
            f"model must be a DistilBertSimilarityModel or EmbeddingModel, got {type(model).__name__}"
        )
    summary = model.training_summary or {}
    if summary.get("interrupted") and not allow_interrupted:
        raise ValueError(f"the model's last fit was interrupted after {summary.get('epochs', 0)} epoch(s): it is "
                         "half-trained; fit it again, or pass allow_interrupted=True to save it anyway")
    if summary.get("diverged"):
        raise TrainedModelError("the model's last fit diverged (its loss became NaN or infinite): its weights are "
                                "unusable; fit it again with a lower learning rate")
    problem = weights_problem(model.parameters() if isinstance(model, DistilBertSimilarityModel)
                              else model.model.parameters())
    if problem is not None:
        raise TrainedModelError(f"the model cannot be saved: {problem}")
    label_map = label_map_to_save(model, label_map)
    config = {
        "format": _FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        **model.config_sections(),
        "labels": label_map.names,
        "extra": dict(extra) if extra else None,
    }
    text = json.dumps(to_jsonable(config), indent=2) + "\n"
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp, quiet_transformers():
        if isinstance(model, DistilBertSimilarityModel):
            model.save_servable(str(tmp))
        else:
            model.model.save(str(tmp))
        label_map.save(tmp / LABEL_MAP_FILE)
        atomic_write_text(tmp / CONFIG_FILE, text)
        write_manifest(tmp)
    return path


def load(
    path: str | os.PathLike,
    *,
    embedding_cache: EmbeddingCache | str | os.PathLike | bool | None = None,
    device: str | torch.device | None = None,
    encoder_backend: str | None = None,
) -> EmbeddingModel:
    """Load a model written by `save` for inference (works offline, in a new process).

    The files are checked first, so a damaged one is named: every JSON file must parse, the
    weights files must be complete, and a folder written by `save` must have its
    ``label_map.json``. A folder written by plain quaterion (no ``training_config.json``)
    loads with a warning naming the missing files; its ``label_map`` is ``None``.

    Args:
        path: Folder written by `save` (format 3; folders of 0.2 and earlier are refused).
        embedding_cache: Disk cache, folder, or ``True`` (the default folder) for the
            encoder's raw output; the encoder is frozen on load, so texts it has embedded
            before are not encoded again.
        device: Move the model there (e.g. ``"cuda"``); CPU by default.
        encoder_backend: Run the frozen encoder on this backend (a name of
            `refinery_quaterion.model.backends.BACKENDS`) instead of the one it was saved with.

    Returns:
        An `EmbeddingModel` with ``encode``, ``similarity``, ``encode_raw``, ``apply_head``,
        ``label_map``, ``template``, ``model_config``, ``fit_config``, ``config`` and ``dim``.

    Raises:
        FileNotFoundError: If ``path`` is not a saved model folder (no ``config.json``).
        ValueError: For an unknown ``encoder_backend``.
        ModelFileError: A ``ValueError`` naming the file, if one is empty, truncated or
            malformed (``config.json``, ``training_config.json``, ``label_map.json``, the
            weights), if ``label_map.json`` is missing from a folder written by `save`, or if
            ``training_config.json`` holds invalid settings.
    """
    path = Path(path)
    config, label_map = read_model_folder(path)
    try:
        with _quiet_loading():
            similarity_model = SimilarityModel.load(str(path))
    except ModelFileError:
        raise
    except Exception as err:  # json, torch, safetensors, transformers: name the folder and the cause
        raise ModelFileError(path, f"cannot be loaded as a saved model ({type(err).__name__}: {err})") from err
    model = EmbeddingModel(similarity_model, label_map=label_map, config=config, path=path)
    model.encoder.freeze()
    model.encoder.embedding_cache = EmbeddingCache.coerce(embedding_cache)
    if encoder_backend is not None:
        model.encoder.backend = encoder_backend
        if model.model_config is not None:
            model.model_config = model.model_config.replace(encoder_backend=encoder_backend)
    similarity_model.eval()
    if device is not None:
        model.to(device)
    return model


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for package in ("refinery-quaterion", "quaterion", "quaterion-models", "torch", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out
