"""Builders for refinery data in each of its forms (see ../shared/docs/refinery-formats.md).

One small AG-News-like project (10 records, task ``Topic`` on the whole record) is written
as an SDK export, a UI download (JSON/CSV/XLSX, zipped or not, with or without password)
and a project snapshot, so the readers can be checked against the same expected table.
"""

from __future__ import annotations

import json
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pandas as pd

LABELS = ["Business", "Sports", "World"]

# (Title, Description, manual, weak label, weak confidence)
ROWS = [
    ("Stocks rally", "Markets climb on earnings", "Business", "Business", 0.91),
    ("Cup final", "Team wins the cup", None, "Sports", 0.95),
    ("Summit held", "Leaders meet in Geneva", None, "World", 0.71),
    ("Oil prices", "Crude hits new high", None, "Business", 0.70),  # == threshold: dropped
    ("Transfer news", "Striker signs deal", "Sports", "World", 0.80),  # manual wins
    ("Election day", "Voters head to polls", None, "World", 0.55),  # low confidence
    ("Quiet day", "Nothing happened", None, None, None),  # no label
    ("Merger talks", "Banks in merger talks", None, "Business", None),  # no confidence
    ("Peace deal", "Treaty signed", "World", None, None),
    ("Sport and money", "Club shares rise", "Business, Sports", "Business", 0.99),  # multi-label
]

# Expected result of combine_labels(min_confidence=0.7) on ROWS.
EXPECTED_KEPT = {
    "Stocks rally": ("Business", "manual"),
    "Cup final": ("Sports", "weak_supervision"),
    "Summit held": ("World", "weak_supervision"),
    "Transfer news": ("Sports", "manual"),
    "Peace deal": ("World", "manual"),
}
EXPECTED_DROPPED = {"no_label": 1, "low_confidence": 2, "no_confidence": 1, "multi_label": 1}


def sdk_frame() -> pd.DataFrame:
    """What ``client.get_record_export(tokenize=False)`` returns: strings everywhere."""
    return pd.DataFrame(
        {
            "record_id": [f"id-{i}" for i in range(len(ROWS))],
            "Title": [r[0] for r in ROWS],
            "Description": [r[1] for r in ROWS],
            "__Topic__MANUAL": [r[2] for r in ROWS],
            "__Topic__WEAK_SUPERVISION": [r[3] for r in ROWS],
            "__Topic__WEAK_SUPERVISION__confidence": [None if r[4] is None else f"{r[4]:.4f}" for r in ROWS],
        }
    )


def ui_frame() -> pd.DataFrame:
    """The UI download (refinery >= 1.5): float confidence, single-underscore spelling."""
    return pd.DataFrame(
        {
            "Title": [r[0] for r in ROWS],
            "Description": [r[1] for r in ROWS],
            "__Topic__MANUAL": [r[2] for r in ROWS],
            "__Topic__WEAK_SUPERVISION": [r[3] for r in ROWS],
            "__Topic__WEAK_SUPERVISION_CONFIDENCE": [r[4] for r in ROWS],
            "__Topic__INFORMATION_SOURCE__keywords": ["Business"] * len(ROWS),
        }
    )


def old_sdk_frame(extraction_tags: bool = False) -> pd.DataFrame:
    """An early SDK CSV export: the classification task ``Topic`` plus an extraction task ``NER``.

    The extraction task's columns hold Python-repr lists, one entry per token, and its
    confidences ``Decimal`` reprs — what ``str(list)`` of the SDK's values gave in a CSV. With
    ``extraction_tags=False`` every token is ``'O'`` (a fresh extraction task), the shape the
    v0.1 reader mistook for classification and refused at the confidence column.
    """
    frame = sdk_frame()
    tags, confidences = [], []
    for i, (title, _, _, _, _) in enumerate(ROWS):
        tokens = title.split()
        tag = ["O"] * len(tokens)
        if extraction_tags and i % 2 == 0:
            tag[0] = "B-ORG"
        tags.append(str(tag))
        confidences.append("[" + ", ".join("Decimal('0.93')" if t != "O" else "Decimal('0')" for t in tag) + "]")
    frame["Title__NER__MANUAL"] = [tags[i] if i in (0, 4) else None for i in range(len(ROWS))]
    frame["Title__NER__WEAK_SUPERVISION"] = tags
    frame["Title__NER__WEAK_SUPERVISION__confidence"] = confidences
    return frame


def write_ui(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as the UI does, by the suffix of ``path`` (.json / .csv / .xlsx)."""
    if path.suffix == ".json":
        path.write_text(frame.to_json(orient="records"), encoding="utf-8")
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:  # pragma: no cover - test misuse
        raise ValueError(path)
    return path


def zip_file(source: Path, target: Path, password: bytes | None = None, macosx: bool = False) -> Path:
    """Zip ``source`` into ``target``; ZipCrypto-encrypt it when ``password`` is given."""
    data = source.read_bytes()
    if password is None:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(source.name, data)
            if macosx:
                archive.writestr(f"__MACOSX/._{source.name}", b"\x00\x05\x16\x07junk")
        return target
    target.write_bytes(_zipcrypto_archive(source.name, data, password))
    return target


def snapshot(weak_runs: int = 2) -> dict:
    """A project snapshot holding ROWS, with ``weak_runs`` weak-supervision runs.

    The newest run carries the labels of ROWS; older runs carry a wrong label ("World")
    everywhere, so reading the wrong run is visible.
    """
    attributes = [
        {"id": "a-title", "name": "Title", "data_type": "TEXT", "is_primary_key": False, "relative_position": 0},
        {"id": "a-desc", "name": "Description", "data_type": "TEXT", "is_primary_key": False,
         "relative_position": 1},
    ]
    tasks = [
        {"id": "t-topic", "attribute_id": "None", "name": "Topic", "task_target": "ON_WHOLE_RECORD",
         "task_type": "MULTICLASS_CLASSIFICATION"},
        {"id": "t-ner", "attribute_id": "a-desc", "name": "NER", "task_target": "ON_ATTRIBUTE",
         "task_type": "INFORMATION_EXTRACTION"},
    ]
    label_ids = {name: f"l-{name}" for name in LABELS}
    labels = [{"id": label_ids[n], "labeling_task_id": "t-topic", "name": n, "color": "red"} for n in LABELS]
    labels.append({"id": "l-person", "labeling_task_id": "t-ner", "name": "PERSON", "color": "blue"})
    records = [
        {"id": f"r{i}", "data": {"Title": r[0], "Description": r[1]}, "category": "SCALE"}
        for i, r in enumerate(ROWS)
    ]
    assoc = []

    def add(record: str, label: str, source_type: str, **extra) -> None:
        assoc.append(
            {"id": f"x{len(assoc)}", "record_id": record, "labeling_task_label_id": label,
             "source_type": source_type, "source_id": extra.pop("source_id", "None"), "return_type": "RETURN",
             "confidence": extra.pop("confidence", "None"), "is_gold_star": None,
             "is_valid_manual_label": extra.pop("valid", True),
             "weak_supervision_id": extra.pop("run", "None"), "created_at": extra.pop("created_at")}
        )

    for i, (_, _, manual, weak, confidence) in enumerate(ROWS):
        rid = f"r{i}"
        if manual:
            for name in manual.split(", "):
                add(rid, label_ids[name], "MANUAL", created_at="2023-01-01T10:00:00")
        for run in range(weak_runs):
            newest = run == weak_runs - 1
            label = weak if newest else "World"
            if label is None:
                continue
            add(rid, label_ids[label], "WEAK_SUPERVISION", run=f"ws-{run}",
                confidence="None" if (newest and confidence is None) else (confidence if newest else 0.99),
                created_at=f"2023-02-0{run + 1}T10:00:00")
    # An invalid manual label (an annotator outvoted) must be ignored.
    add("r1", label_ids["World"], "MANUAL", valid=False, created_at="2023-01-01T10:00:00")
    # An extraction label (YIELD) must be ignored.
    assoc.append({"id": "y0", "record_id": "r0", "labeling_task_label_id": "l-person",
                  "source_type": "MANUAL", "return_type": "YIELD", "confidence": "None",
                  "is_valid_manual_label": True, "weak_supervision_id": "None",
                  "created_at": "2023-01-01T10:00:00"})
    return {
        "project_details_data": {"name": "ag-news-mini"},
        "records_data": records,
        "attributes_data": attributes,
        "labeling_tasks_data": tasks,
        "labeling_task_labels_data": labels,
        "information_sources_data": [],
        "record_label_associations_data": assoc,
        "record_label_association_tokens_data": [],
        "weak_supervision_task_data": [],
        "embeddings_data": [],
    }


def write_snapshot(path: Path, payload: dict | None = None, macosx: bool = True) -> Path:
    """Write a snapshot ``.json.zip`` as refinery (on macOS) does."""
    payload = snapshot() if payload is None else payload
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project_export.json", json.dumps(payload))
        if macosx:
            archive.writestr("__MACOSX/._project_export.json", b"\x00\x05\x16\x07junk")
    return path


# ----------------------------------------------------------------------------------------
# A minimal ZipCrypto ("traditional PKWARE") writer: Python's zipfile reads these archives
# but cannot write them, and refinery's password-protected downloads use this scheme.
# ----------------------------------------------------------------------------------------


def _crc_byte(crc: int, byte: int) -> int:
    return (~zlib.crc32(bytes([byte]), ~crc & 0xFFFFFFFF)) & 0xFFFFFFFF


class _ZipCrypto:
    def __init__(self, password: bytes):
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self._update(byte)

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = _crc_byte(k0, byte)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = _crc_byte(k2, k1 >> 24)
        self.keys = [k0, k1, k2]

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            temp = (self.keys[2] | 2) & 0xFFFF
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


def _zipcrypto_archive(name: str, data: bytes, password: bytes) -> bytes:
    crc = zlib.crc32(data) & 0xFFFFFFFF
    header = bytes(range(11)) + bytes([crc >> 24])
    payload = _ZipCrypto(password).encrypt(header + data)
    t = time.localtime()
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    fname = name.encode()
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0x1, 0, dos_time, dos_date, crc, len(payload), len(data), len(fname), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x1, 0, dos_time, dos_date, crc, len(payload), len(data),
        len(fname), 0, 0, 0, 0, 0, 0,
    )
    body = local + fname + payload
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(fname), len(body), 0)
    return body + central + fname + end
