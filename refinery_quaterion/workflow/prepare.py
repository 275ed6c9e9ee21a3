"""Step 1: a refinery export to labeled records, split, optionally written to a folder.

`prepare_records` and `load_prepared`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from refinery_quaterion._io import atomic_dir, refuse_output_over_inputs
from refinery_quaterion.data.config import DEFAULT_TEMPLATE, HOLDOUTS, LabelConfig
from refinery_quaterion.data.dataset import LabelMap, load_records
from refinery_quaterion.data.labels import LabelReport, combine_labels
from refinery_quaterion.data.splits import HoldoutSplit, split_by_source, train_val_split
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError

__all__ = ["HOLDOUTS", "PreparedRecords", "load_prepared", "prepare_records"]


@dataclass
class PreparedRecords:
    """Labeled records split for training, as `prepare_records` made them or `load_prepared` read them.

    Attributes:
        train: Training records (attributes + ``label``, ``label_source``, ``confidence``).
        val: Validation records (same columns); empty when there are none.
        label_map: Labels of all records.
        template: Text template the records are meant to be rendered with.
        report: What `combine_labels` kept and dropped (``None`` when read from a folder).
        path: The folder written or read, or ``None``.
        test: Held-out test records (with ``holdout="manual"``: the manually labeled ones), or
            ``None`` without a holdout.
        holdout: What `split_by_source` did with ``holdout="manual"`` (counts of the split),
            else ``None``.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    label_map: LabelMap
    template: TextSpec
    report: LabelReport | None = None
    path: Path | None = None
    test: pd.DataFrame | None = None
    holdout: HoldoutSplit | None = None

    def __str__(self) -> str:
        where = f" in {self.path}" if self.path is not None else ""
        test = f", {len(self.test)} test records" if self.test is not None else ""
        return (f"{len(self.train)} training and {len(self.val)} validation records{test}, "
                f"{len(self.label_map)} labels{where}")


def prepare_records(
    export: Any,
    config: LabelConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    password: str | None = None,
    overwrite: bool = False,
) -> PreparedRecords:
    """Keep manual and confident weak-supervision labels of an export and split them, as ``config`` says.

    Records whose rendered text is blank are dropped (and counted in the report), and
    records with identical texts stay on one side of the split (`train_val_split` with the
    template). With ``holdout="manual"`` the manually labeled records become the test set and
    training uses the weak-supervision labels only (`split_by_source`).

    With ``out`` the folder gets (atomically) ``train.json``, ``val.json``, ``test.json``
    (with a holdout), ``labels.json`` (the label map), ``report.txt`` (the `LabelReport`) and
    ``prepare.json`` (the settings of ``config``, the threshold actually used and the report),
    which `load_prepared` and ``refinery-quaterion train`` read.

    Args:
        export: A refinery export file (anything `load_export` reads) or a loaded export.
        config: What to keep and how to split (default `LabelConfig()`: the ``{text}``
            attribute, `combine_labels`' threshold, a stratified 25% validation split).
        out: Folder to write, or ``None`` to only return the records.
        password: Password of a protected UI download zip.
        overwrite: Replace an existing ``out``.

    Returns:
        The `PreparedRecords`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked first).
        SettingError: If ``out`` is, contains or lies inside the export file (checked first).
        ValueError: If the template names a column the records do not have, or for the errors
            of `combine_labels`, `train_val_split` and `split_by_source`.
        TypeError: For a ``config`` that is not a `LabelConfig`.
    """
    config = _checked_config(config)
    refuse_output_over_inputs(out, {"the export": export if isinstance(export, str | os.PathLike) else None})
    if out is not None and os.path.lexists(out) and not overwrite:
        raise OutputExistsError(out)
    source = export
    if isinstance(export, str | os.PathLike):
        from refinery_quaterion.data.refinery import load_export

        export = load_export(export, password=password)
    template = TextTemplate(config.template)
    where = source if isinstance(source, str | os.PathLike) else getattr(export, "source", "the export")
    options = {} if config.min_confidence is None else {"min_confidence": config.min_confidence}
    records, report = combine_labels(export, config.task, template=template.spec, **options)
    template.validate(records.columns, source=f"{where} (after combining labels)")
    train, val, test, split = _split(records, config)
    prepared = PreparedRecords(train=train, val=val, label_map=LabelMap.from_frame(records), template=template.spec,
                               report=report, test=test, holdout=split)
    if out is not None:
        _write_prepared(out, prepared, _settings(config, where, report, prepared), overwrite=overwrite)
    return prepared


def _checked_config(config: LabelConfig | None) -> LabelConfig:
    if config is not None and not isinstance(config, LabelConfig):
        raise TypeError(f"config must be a LabelConfig, got {type(config).__name__}")
    return config or LabelConfig()


def _split(records: pd.DataFrame, config: LabelConfig
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, HoldoutSplit | None]:
    """``(train, val, test, holdout split)`` of the combined records, as ``config`` says."""
    options = {"val_size": config.val_size, "seed": config.split_seed, "stratify": config.stratify,
               "template": config.template}
    if config.holdout == "manual":
        split = split_by_source(records, **options)
        train, val, test = split
        return train, val, test, split
    if config.val_size == 0:
        return records.reset_index(drop=True), records.iloc[0:0].reset_index(drop=True), None, None
    train, val = train_val_split(records, **options)
    return train, val, None, None


def _settings(config: LabelConfig, where: Any, report: LabelReport, prepared: PreparedRecords) -> dict[str, Any]:
    """What ``prepare.json`` holds: the settings, the threshold actually used, the counts and the report."""
    settings: dict[str, Any] = {
        "export": str(where),
        **config.to_dict(),
        "task": report.task,
        "min_confidence": report.min_confidence,
        "min_confidence_requested": "default" if config.min_confidence is None else config.min_confidence,
        "train_records": len(prepared.train),
        "val_records": len(prepared.val),
        "report": report.to_dict(),
    }
    split = prepared.holdout
    if split is not None:
        settings.update(test_records=len(split.test), removed_overlap=split.removed_overlap,
                        test_only_labels=list(split.test_only_labels))
    return settings


def _write_prepared(out: str | os.PathLike, prepared: PreparedRecords, settings: Mapping[str, Any], *,
                    overwrite: bool) -> None:
    """Write the prepared folder atomically and remember it in ``prepared.path``."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        frames = {"train": prepared.train, "val": prepared.val,
                  **({"test": prepared.test} if prepared.test is not None else {})}
        for name, frame in frames.items():
            frame.to_json(tmp / f"{name}.json", orient="records", force_ascii=False, indent=1)
        prepared.label_map.save(tmp / "labels.json")
        (tmp / "report.txt").write_text(str(prepared.report) + "\n", encoding="utf-8")
        (tmp / "prepare.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    prepared.path = Path(out)


def load_prepared(folder: str | os.PathLike, *, template: TextSpec | None = None,
                  label_column: str = "label") -> PreparedRecords:
    """Read a folder written by `prepare_records` (or by hand: ``train.json`` [+ ``val.json``]).

    ``test.json``, when there (``holdout="manual"``), is read into ``test``.

    Args:
        folder: The folder.
        template: Text template; ``None`` takes the one in ``prepare.json``.
        label_column: Column holding the labels.

    Returns:
        The `PreparedRecords` (``report`` and ``holdout`` are ``None``).

    Raises:
        FileNotFoundError: If the folder does not exist or has no ``train.json``.
        NotADirectoryError: If ``folder`` is a file.
        ValueError: If ``template`` is ``None`` and the folder has no ``prepare.json``, or
            ``prepare.json`` is not valid JSON; or a file is empty, ``train.json`` holds no
            records, or a file's records lack the label column or a field of the template (the
            message names the file).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder; expected a prepared folder (with train.json, val.json "
                                "and prepare.json)")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file; expected a prepared folder (with train.json, val.json "
                                 "and prepare.json)")
    settings_file = folder / "prepare.json"
    if template is None:
        if not settings_file.is_file():
            raise SettingError(f"{folder}: no prepare.json, so the text template is unknown",
                               fixes=(Fix("template", MISSING),),
                               alternative="prepare the folder first")
        try:
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{settings_file}: not valid JSON ({err}); write it again with prepare") from None
        template = (settings.get("template") if isinstance(settings, dict) else None) or DEFAULT_TEMPLATE
    train_file = folder / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{folder}: no train.json; expected the folder written by prepare_records")
    train = _prepared_records(train_file, template, label_column, required=True)
    val_file, test_file = folder / "val.json", folder / "test.json"
    val = _prepared_records(val_file, template, label_column) if val_file.is_file() else train.iloc[0:0]
    test = _prepared_records(test_file, template, label_column) if test_file.is_file() else None
    labels_file = folder / "labels.json"
    label_map = (LabelMap.load(labels_file) if labels_file.is_file()
                 else LabelMap.from_frame(pd.concat([train, val]), column=label_column))
    return PreparedRecords(train=train, val=val, label_map=label_map, template=template, path=folder,
                           test=test)


def _prepared_records(path: Path, template: TextSpec, label_column: str, *, required: bool = False) -> pd.DataFrame:
    """The records of one file of a prepared folder, checked so that an error names the file.

    Refuses an empty file (and, when ``required``, one without records), and records that lack
    the label column or a field of the template.
    """
    if not path.read_bytes().strip():
        raise ValueError(f"{path} is empty; expected the records written by prepare (run prepare again)")
    frame = load_records(path)
    if frame.empty:
        if required:
            raise ValueError(f"{path} holds no records: nothing to train on (run prepare again with more records)")
        return frame
    if label_column not in frame.columns:
        raise ValueError(f"{path} has no label column {label_column!r} (columns: {list(frame.columns)}); "
                         "expected the records written by prepare")
    TextTemplate.coerce(template).validate(frame.columns, source=str(path), label_column=label_column)
    return frame
