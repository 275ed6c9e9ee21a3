"""Stage 1, data: refinery exports in, labeled records out.

* `refinery_quaterion.data.readers`: files (JSON, JSON Lines, CSV, XLSX, Parquet, zip) to rows;
* `refinery_quaterion.data.refinery`: a refinery export or snapshot as `RefineryExport`;
* `refinery_quaterion.data.snapshot`: a project snapshot's tables joined into records and labels;
* `refinery_quaterion.data.thresholds`: the weak-label confidence threshold from the manual labels;
* `refinery_quaterion.data.labels`: one label per record (`combine_labels`) and its `LabelReport`;
* `refinery_quaterion.data.cleaning`: suspected label errors (`clean_labels`);
* `refinery_quaterion.data.text`: what text a record is embedded as (`TextTemplate`);
* `refinery_quaterion.data.splits`: train/validation/test splits and leak checks;
* `refinery_quaterion.data.dataset`: `RefineryExportDataset` and `LabelMap` for training;
* `refinery_quaterion.data.config`: `LabelConfig` (how labels are prepared) and `StageConfig`, the base of every
  stage's config.

Nothing here imports torch until a dataset is built.
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "readers": ("DataFile", "RefineryFileError", "load_records", "read_data_file"),
    "refinery": ("ClassificationTask", "RefineryExport", "SupportsRecordExport", "load_export"),
    "thresholds": ("AutoThreshold", "ThresholdChoice", "choose_threshold", "threshold_report"),
    "labels": ("DROP_REASONS", "LabelReport", "LabelVariantWarning", "combine_labels"),
    "cleaning": ("CleaningReport", "clean_labels"),
    "text": ("TextSpec", "TextTemplate"),
    "splits": ("DuplicateReport", "DuplicateTextWarning", "HoldoutSplit", "SplitLeaks", "duplicate_report",
               "split_by_source", "split_leaks", "train_val_split"),
    "dataset": ("LabelMap", "RefineryExportDataset"),
    "config": ("HOLDOUTS", "LabelConfig", "StageConfig"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
