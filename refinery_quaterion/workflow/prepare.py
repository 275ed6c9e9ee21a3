"""Step 1: a refinery export to labeled records, split, optionally written to a folder.

`prepare_records` and `load_prepared`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from refinery_quaterion._io import atomic_dir
from refinery_quaterion.data.dataset import LabelMap, load_records
from refinery_quaterion.data.labels import LabelReport, combine_labels
from refinery_quaterion.data.splits import HoldoutSplit, split_by_source, train_val_split
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.errors import MISSING, Fix, OutputExistsError, SettingError

__all__ = ["HOLDOUTS", "PreparedRecords", "load_prepared", "prepare_records"]

_DEFAULT_TEXT = "{text}"

HOLDOUTS = ("manual",)
"""Values of ``prepare_records(holdout=...)``: ``"manual"`` holds the manually labeled records out as the test set."""


@dataclass
class PreparedRecords:
    """Labeled records split for training, as `prepare_records` made them or `load_prepared` read them.

    Attributes:
        train: Training records (attributes + ``label``, ``label_source``, ``confidence``).
        val: Validation records (same columns); empty when there are none.
        label_map: Labels of all records.
        text: Text template the records are meant to be rendered with.
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
    text: TextSpec
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
    out: str | os.PathLike | None = None,
    *,
    task: str | None = None,
    text: TextSpec = _DEFAULT_TEXT,
    min_confidence: float | Literal["auto"] | None = None,
    val_size: float | int = 0.25,
    seed: int = 42,
    stratify: bool = True,
    holdout: Literal["manual"] | None = None,
    password: str | None = None,
    overwrite: bool = False,
) -> PreparedRecords:
    """Keep manual and confident weak-supervision labels of an export and split them.

    Records whose rendered text is blank are dropped (and counted in the report), and
    records with identical texts stay on one side of the split (`train_val_split` with the
    template). With ``holdout="manual"`` the manually labeled records become the test set and
    training uses the weak-supervision labels only (`split_by_source`).

    With ``out`` the folder gets (atomically) ``train.json``, ``val.json``, ``test.json``
    (with a holdout), ``labels.json`` (the label map), ``report.txt`` (the `LabelReport`) and
    ``prepare.json`` (these settings, the threshold actually used and the report), which
    `load_prepared` and ``refinery-quaterion train`` read.

    Args:
        export: A refinery export file (anything `load_export` reads) or a loaded export.
        out: Folder to write, or ``None`` to only return the records.
        task: Classification task name (may be omitted when the export has one task).
        text: Text template, e.g. ``"{Title}. {Description}"``; checked against the columns.
        min_confidence: Keep weak-supervision labels with a confidence above this; ``"auto"``
            chooses it from the manual labels (see `combine_labels`); ``None`` takes
            `combine_labels`' default.
        val_size: Validation share (0 < x < 1) or number of records; ``0``: no validation records.
        seed: Split seed.
        stratify: Split by class (otherwise at random).
        holdout: ``"manual"``: hold the manually labeled records out as the test set.
        password: Password of a protected UI download zip.
        overwrite: Replace an existing ``out``.

    Returns:
        The `PreparedRecords`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false (checked first).
        ValueError: If the template names a column the records do not have, for an unknown
            ``holdout``, or for the errors of `combine_labels`, `train_val_split` and
            `split_by_source`.
    """
    if holdout is not None and holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {list(HOLDOUTS)} or None, got {holdout!r}")
    if out is not None and os.path.lexists(out) and not overwrite:
        raise OutputExistsError(out)
    source = export
    if isinstance(export, str | os.PathLike):
        from refinery_quaterion.data.refinery import load_export

        export = load_export(export, password=password)
    template = TextTemplate(text) if not isinstance(text, TextTemplate) else text
    where = source if isinstance(source, str | os.PathLike) else getattr(export, "source", "the export")
    options = {} if min_confidence is None else {"min_confidence": min_confidence}
    records, report = combine_labels(export, task, text=template.spec, **options)
    template.validate(records.columns, source=f"{where} (after combining labels)")
    split: HoldoutSplit | None = None
    if holdout == "manual":
        split = split_by_source(records, val_size=val_size, seed=seed, stratify=stratify, text=template.spec)
        train, val, test = split
    elif val_size == 0:
        train, val, test = records.reset_index(drop=True), records.iloc[0:0].reset_index(drop=True), None
    else:
        train, val = train_val_split(records, val_size=val_size, seed=seed, stratify=stratify, text=template.spec)
        test = None
    label_map = LabelMap.from_frame(records)
    prepared = PreparedRecords(train=train, val=val, label_map=label_map, text=template.spec, report=report,
                               test=test, holdout=split)
    if out is None:
        return prepared
    settings: dict[str, Any] = {
        "export": str(where),
        "task": report.task,
        "min_confidence": report.min_confidence,
        "min_confidence_requested": "default" if min_confidence is None else min_confidence,
        "text": template.to_config(),
        "val_size": val_size,
        "seed": seed,
        "stratify": stratify,
        "holdout": holdout,
        "train_records": len(train),
        "val_records": len(val),
        "report": report.to_dict(),
    }
    if split is not None:
        settings.update(test_records=len(split.test), removed_overlap=split.removed_overlap,
                        test_only_labels=list(split.test_only_labels))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        frames = {"train": train, "val": val, **({"test": test} if test is not None else {})}
        for name, frame in frames.items():
            frame.to_json(tmp / f"{name}.json", orient="records", force_ascii=False, indent=1)
        label_map.save(tmp / "labels.json")
        (tmp / "report.txt").write_text(str(report) + "\n", encoding="utf-8")
        (tmp / "prepare.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    prepared.path = Path(out)
    return prepared


def load_prepared(folder: str | os.PathLike, *, text: TextSpec | None = None,
                  label_column: str = "label") -> PreparedRecords:
    """Read a folder written by `prepare_records` (or by hand: ``train.json`` [+ ``val.json``]).

    ``test.json``, when there (``holdout="manual"``), is read into ``test``.

    Args:
        folder: The folder.
        text: Text template; ``None`` takes the one in ``prepare.json``.
        label_column: Column holding the labels.

    Returns:
        The `PreparedRecords` (``report`` and ``holdout`` are ``None``).

    Raises:
        FileNotFoundError: If the folder does not exist or has no ``train.json``.
        NotADirectoryError: If ``folder`` is a file.
        ValueError: If ``text`` is ``None`` and the folder has no ``prepare.json``, or
            ``prepare.json`` is not valid JSON.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder; expected a prepared folder (with train.json, val.json "
                                "and prepare.json)")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is a file; expected a prepared folder (with train.json, val.json "
                                 "and prepare.json)")
    settings_file = folder / "prepare.json"
    if text is None:
        if not settings_file.is_file():
            raise SettingError(f"{folder}: no prepare.json, so the text template is unknown",
                               fixes=(Fix("text", MISSING),),
                               alternative="prepare the folder first")
        try:
            settings = json.loads(settings_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{settings_file}: not valid JSON ({err}); write it again with prepare") from None
        text = (settings.get("text") if isinstance(settings, dict) else None) or _DEFAULT_TEXT
    train_file = folder / "train.json"
    if not train_file.is_file():
        raise FileNotFoundError(f"{folder}: no train.json; expected the folder written by prepare_records")
    train = load_records(train_file)
    val_file, test_file = folder / "val.json", folder / "test.json"
    val = load_records(val_file) if val_file.is_file() else train.iloc[0:0]
    test = load_records(test_file) if test_file.is_file() else None
    labels_file = folder / "labels.json"
    label_map = (LabelMap.load(labels_file) if labels_file.is_file()
                 else LabelMap.from_frame(pd.concat([train, val]), column=label_column))
    return PreparedRecords(train=train, val=val, label_map=label_map, text=text, path=folder, test=test)
