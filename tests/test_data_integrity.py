"""Issue 21, data stage: inputs read as written, labels and texts compared the way users mean them.

Each test is one case of the issue: real values kept (not read as missing), label variants,
invisible characters, dangling snapshot associations, a template that leaks the label, near-
duplicates across splits, snapshots without tasks or records, and a class left only in val.
"""

from __future__ import annotations

import json
import unicodedata
import warnings

import pandas as pd
import pytest
from refinery_fixtures import snapshot, write_snapshot

from refinery_quaterion.data.dataset import RefineryExportDataset
from refinery_quaterion.data.labels import LabelVariantWarning, combine_labels
from refinery_quaterion.data.readers import RefineryFileError, load_records
from refinery_quaterion.data.refinery import load_export
from refinery_quaterion.data.splits import (
    DuplicateTextWarning,
    duplicate_report,
    split_by_source,
    split_leaks,
    train_val_split,
)
from refinery_quaterion.data.text import TextTemplate, comparable_text, is_blank
from refinery_quaterion.errors import SettingError

NA_SPELLINGS = ["N/A", "NA", "None", "null", "#N/A", "nan"]


def _export_rows(labels: list[str | None], texts: list[str] | None = None) -> list[dict]:
    texts = texts or [f"text number {i}" for i in range(len(labels))]
    return [{"text": t, "__Topic__MANUAL": label} for t, label in zip(texts, labels, strict=True)]


# --------------------------------------------------------------------------------------
# 1. Strings such as "NA" or "None" are values, not missing
# --------------------------------------------------------------------------------------


def _write_table(path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)  # None is written as an empty cell
    elif path.suffix == ".xlsx":
        pytest.importorskip("openpyxl")
        frame.to_excel(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_na_like_labels_and_texts_are_kept_and_only_empty_cells_are_missing(tmp_path, suffix) -> None:
    # In a workbook "#N/A" is an error cell (openpyxl writes the string as one), not a text.
    spellings = [s for s in NA_SPELLINGS if suffix != ".xlsx" or s != "#N/A"]
    labels = [*spellings, "Sports", None]
    texts = [*spellings, "#N/A and more", "unlabeled"]
    path = tmp_path / f"export{suffix}"
    _write_table(path, _export_rows(labels, texts))
    export = load_export(path)
    manual = export.records["__Topic__MANUAL"].tolist()
    assert manual[:-1] == [*spellings, "Sports"]
    assert pd.isna(manual[-1])
    assert export.records["text"].tolist() == texts
    records, report = combine_labels(export, template="{text}", min_confidence=0.5)
    assert report.dropped == {"no_label": 1}
    assert sorted(records["label"]) == sorted([*spellings, "Sports"])


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_load_records_keeps_na_strings(tmp_path, suffix) -> None:
    path = tmp_path / f"records{suffix}"
    _write_table(path, [{"text": "NA", "label": "None"}, {"text": "null", "label": None}])
    frame = load_records(path)
    assert frame["text"].tolist() == ["NA", "null"]
    assert frame["label"].iloc[0] == "None"
    assert pd.isna(frame["label"].iloc[1])


# --------------------------------------------------------------------------------------
# 2. Label variants: NFC, invisible characters, case-only variants
# --------------------------------------------------------------------------------------


def test_label_names_are_normalised_and_case_variants_warned(tmp_path) -> None:
    nfd = unicodedata.normalize("NFD", "Café")
    labels = ["Sports", "sports", "Café", nfd, "Business", "Business\u200b", "Business", "Café"]
    path = tmp_path / "export.jsonl"
    _write_table(path, _export_rows(labels))
    export = load_export(path)
    assert sorted(export.task().labels) == ["Business", "Café", "Sports", "sports"]
    assert any("normalised" in note and "Business\\u200b" in note for note in export.notes)
    with pytest.warns(LabelVariantWarning, match="'Sports' / 'sports'"):
        records, report = combine_labels(export, template="{text}", min_confidence=0.5)
    assert set(records["label"]) == {"Business", "Café", "Sports", "sports"}
    assert report.case_variants == [["Sports", "sports"]]
    assert report.to_dict()["case_variants"] == [["Sports", "sports"]]
    assert "differ only in case" in str(report) and "'Sports' / 'sports'" in str(report)


def test_snapshot_label_names_are_normalised(tmp_path) -> None:
    payload = snapshot()
    for label in payload["labeling_task_labels_data"]:
        if label["name"] == "Sports":
            label["name"] = "Sports\u200b"
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip", payload))
    assert "Sports" in export.task("Topic").labels
    assert "Sports\u200b" not in export.task("Topic").labels


def test_no_case_variants_no_warning(tmp_path) -> None:
    path = tmp_path / "export.jsonl"
    _write_table(path, _export_rows(["a", "b", "a", "b"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelVariantWarning)
        _, report = combine_labels(load_export(path), template="{text}", min_confidence=0.5)
    assert report.case_variants == []
    assert "case_variants" in report.to_dict()


# --------------------------------------------------------------------------------------
# 3. Invisible characters count as blank, everywhere
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\u200b", " \u200b\u200d\ufeff ", "\u2060\n\t", "\u3164", None])
def test_invisible_texts_are_blank(text) -> None:
    assert is_blank(text)


@pytest.mark.parametrize("text", ["a", "NA", " \u200bx", "—", "٠"])
def test_visible_texts_are_not_blank(text) -> None:
    assert not is_blank(text)


def test_zero_width_text_is_dropped_by_combine_labels_and_refused_by_the_dataset(tmp_path) -> None:
    path = tmp_path / "export.jsonl"
    _write_table(path, _export_rows(["a", "b", "a", "b"], ["one", "\u200b\u200b", "three", "four"]))
    records, report = combine_labels(load_export(path), template="{text}", min_confidence=0.5)
    assert report.dropped == {"blank_text": 1}
    assert len(records) == 3
    frame = pd.DataFrame({"text": ["one", "\u200b"], "label": ["a", "b"]})
    with pytest.raises(ValueError, match="blank text"):
        RefineryExportDataset(frame)


# --------------------------------------------------------------------------------------
# 4. Dangling snapshot associations are counted and reported
# --------------------------------------------------------------------------------------


def test_dangling_snapshot_associations_are_reported(tmp_path) -> None:
    payload = snapshot()
    template = dict(payload["record_label_associations_data"][0])
    payload["record_label_associations_data"] += [
        {**template, "id": "d1", "record_id": "r-gone"},
        {**template, "id": "d2", "record_id": "r-gone-too"},
        {**template, "id": "d3", "labeling_task_label_id": "l-gone"},
    ]
    payload["labeling_task_labels_data"].append({"id": "l-orphan", "labeling_task_id": "t-gone", "name": "X"})
    payload["record_label_associations_data"].append({**template, "id": "d4", "labeling_task_label_id": "l-orphan"})
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip", payload))
    note = next(n for n in export.notes if "association" in n)
    assert "4 record-label association(s)" in note
    assert "2 to an unknown record" in note and "1 to an unknown label" in note
    assert "1 to a label of an unknown task" in note
    _, report = combine_labels(export, "Topic", template="{Title}")
    assert any("2 to an unknown record" in n for n in report.notes)
    assert "2 to an unknown record" in str(report)


def test_clean_snapshot_has_no_dangling_note(tmp_path) -> None:
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip"))
    assert not any("association" in n for n in export.notes)


# --------------------------------------------------------------------------------------
# 5. A template that names the label column is refused
# --------------------------------------------------------------------------------------

LEAK = "names the label column 'label'"


def test_template_naming_the_label_column_is_refused_everywhere() -> None:
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
    with pytest.raises(ValueError, match=LEAK):
        RefineryExportDataset(frame, template="{text} {label}")
    with pytest.raises(ValueError, match=LEAK):
        train_val_split(frame, val_size=0.5, template="{text} {label}")
    with pytest.raises(ValueError, match=LEAK):
        TextTemplate("{label}: {text}").validate(frame.columns, label_column="label")
    TextTemplate("{text}").validate(frame.columns, label_column="label")  # fine
    renamed = frame.rename(columns={"label": "topic"})
    with pytest.raises(ValueError, match="names the label column 'topic'"):
        RefineryExportDataset(renamed, template="{text} {topic}", label_column="topic")


def test_combine_labels_refuses_a_template_naming_the_label_column(tmp_path) -> None:
    path = tmp_path / "export.jsonl"
    rows = [{**row, "label": "an attribute called label"} for row in _export_rows(["a", "b", "a", "b"])]
    _write_table(path, rows)
    with pytest.raises(ValueError, match=LEAK):
        combine_labels(load_export(path), template="{text} {label}", min_confidence=0.5)


# --------------------------------------------------------------------------------------
# 6. Near-duplicates (case, whitespace, NFC, invisible characters) stay on one side
# --------------------------------------------------------------------------------------


def _near_duplicates(n: int = 40) -> pd.DataFrame:
    texts, labels = [], []
    for i in range(n):
        base = f"Story number {i} about things"
        variants = [base, base.upper(), f"  story   number {i}\tabout things\u200b "]
        texts += variants
        labels += ["even" if i % 2 == 0 else "odd"] * 3
    return pd.DataFrame({"text": texts, "label": labels})


def test_comparable_text() -> None:
    assert comparable_text("  Hello\u200b  WORLD ") == comparable_text("hello world")
    assert comparable_text(unicodedata.normalize("NFD", "Café")) == comparable_text("CAFÉ")


def test_near_duplicates_stay_on_one_side_of_the_split() -> None:
    frame = _near_duplicates()
    report = duplicate_report(frame, template="{text}")
    assert report.duplicate_texts == 40 and report.duplicated_records == 120
    with pytest.warns(DuplicateTextWarning):
        train, val = train_val_split(frame, val_size=0.25, template="{text}")
    leaks = split_leaks({"train": train, "val": val}, template="{text}")
    assert leaks.pairs == {"train/val": 0} and leaks.leaked == 0
    # without a template: all non-label columns compared the same way
    with pytest.warns(DuplicateTextWarning):
        train, val = train_val_split(frame, val_size=0.25)
    assert split_leaks({"train": train, "val": val}).leaked == 0


def test_split_leaks_reports_every_pair() -> None:
    train = pd.DataFrame({"text": ["Alpha", "beta", "gamma"], "label": ["a", "b", "a"]})
    val = pd.DataFrame({"text": ["ALPHA  ", "delta"], "label": ["a", "b"]})
    test = pd.DataFrame({"text": ["Be\u200bta", "delta", "epsilon"], "label": ["b", "b", "a"]})
    leaks = split_leaks({"train": train, "val": val, "test": test}, template="{text}")
    assert leaks.pairs == {"train/val": 1, "train/test": 1, "val/test": 1}
    assert leaks.leaked == 3
    assert "train/val: 1 record(s)" in str(leaks) and "val/test" in str(leaks)
    assert leaks.to_dict()["leaked"] == 3


def test_holdout_manual_removes_near_duplicates_of_test_texts() -> None:
    records = pd.DataFrame({
        "text": ["Hello there", "HELLO  there", "other text", "more text", "Other TEXT\u200b", "fresh", "new one"],
        "label": ["a", "a", "b", "a", "b", "b", "a"],
        "label_source": ["manual", "weak_supervision", "manual", "weak_supervision", "weak_supervision",
                         "weak_supervision", "weak_supervision"],
    })
    split = split_by_source(records, template="{text}")
    assert split.removed_overlap == 2
    assert split.leaks is not None and split.leaks.leaked == 0
    assert set(split.leaks.pairs) == {"train/val", "train/test", "val/test"}


# --------------------------------------------------------------------------------------
# 7. Snapshots without tasks or without records
# --------------------------------------------------------------------------------------


def test_snapshot_without_tasks_is_described_as_a_snapshot(tmp_path) -> None:
    payload = snapshot()
    payload["labeling_tasks_data"] = [t for t in payload["labeling_tasks_data"] if t["name"] != "Topic"]
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip", payload))
    with pytest.raises(RefineryFileError) as err:
        export.task()
    message = str(err.value)
    assert "snapshot" in message and "MULTICLASS_CLASSIFICATION" in message
    assert "columns are" not in message and "__MANUAL" not in message
    with pytest.raises(RefineryFileError, match="snapshot"):
        combine_labels(export)


def test_snapshot_with_tasks_but_no_records(tmp_path) -> None:
    payload = snapshot()
    payload["records_data"] = []
    payload["record_label_associations_data"] = []
    export = load_export(write_snapshot(tmp_path / "project_export_1.json.zip", payload))
    assert "the snapshot holds no records" in export.notes
    assert export.task("Topic").labels == ["Business", "Sports", "World"]
    with pytest.raises(RefineryFileError, match="holds no records"):
        combine_labels(export, "Topic", template="{Title}")


# --------------------------------------------------------------------------------------
# 8. A class that the split leaves only in validation is named at split time
# --------------------------------------------------------------------------------------


def test_class_only_in_val_is_named_at_split_time() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["a"] * 4 + ["b"] * 4 + ["lonely"]})
    outcomes = []
    for seed in range(12):
        try:
            train, val = train_val_split(frame, val_size=0.34, seed=seed, stratify=False)
        except SettingError as err:
            outcomes.append(str(err))
        else:
            assert set(val["label"]) <= set(train["label"])
    assert outcomes, "no seed put the single record in validation"
    message = outcomes[0]
    assert "'lonely' (1 record)" in message and "val.json" in message and "train.json" in message
    assert "stratify=True" not in message  # stratifying cannot split a class of one record
    assert "label more records" in message


def test_class_of_several_records_only_in_val_suggests_stratify() -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": ["a"] * 5 + ["b"] * 5 + ["pair"] * 2})
    messages = []
    for seed in range(60):
        try:
            train_val_split(frame, val_size=0.5, seed=seed, stratify=False)
        except SettingError as err:
            messages.append(str(err))
    assert messages, "no seed put both records of 'pair' in validation"
    assert "'pair' (2 records)" in messages[0] and "pass stratify=True" in messages[0]


def test_prepare_keeps_near_duplicates_on_one_side(tmp_path) -> None:
    from refinery_quaterion.data.config import LabelConfig
    from refinery_quaterion.workflow.prepare import prepare_records

    frame = _near_duplicates(20)
    path = tmp_path / "export.jsonl"
    _write_table(path, [{"text": t, "__Topic__MANUAL": label} for t, label in zip(frame["text"], frame["label"])])
    with pytest.warns(DuplicateTextWarning):
        prepared = prepare_records(path, LabelConfig(min_confidence=0.5))
    assert split_leaks({"train": prepared.train, "val": prepared.val}, template="{text}").leaked == 0
