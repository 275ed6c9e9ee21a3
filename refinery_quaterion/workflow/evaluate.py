"""Step 3: a saved model on labeled test records: raw vs fine-tuned metrics, probe, report (`evaluate_model`)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from refinery_quaterion._io import refuse_output_over_inputs
from refinery_quaterion.data.dataset import load_records
from refinery_quaterion.data.text import TextTemplate
from refinery_quaterion.errors import OutputExistsError
from refinery_quaterion.evaluate import EvalConfig, EvaluationReport, ProbeSet, compare, evaluation_report, format_table
from refinery_quaterion.evaluate.notes import duplicate_text_note, label_notes
from refinery_quaterion.model.inference import EmbeddingModel
from refinery_quaterion.training.model_files import load
from refinery_quaterion.workflow.train import CacheSpec

__all__ = ["EvaluationOutcome", "evaluate_model"]

@dataclass
class EvaluationOutcome:
    """What `evaluate_model` produced.

    Attributes:
        metrics: One row per model (``raw``, ``fine-tuned``): ``P@k``..., ``MRR``, ``mAP@k``,
            ``mAP``, ``R-precision`` (and the probe's accuracy and macro-F1 with a report).
        report: The `EvaluationReport` of the report folder, or ``None`` without one.
        seconds: Wall time of the whole step (encoding included).
        notes: What makes the metrics mean less than they seem: duplicate test texts, a single
            test label and, with a report, the probe's notes (`refinery_quaterion.evaluate.notes`).
    """

    metrics: pd.DataFrame
    report: EvaluationReport | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def probe(self) -> dict[str, Any]:
        """Model name -> `LinearProbeReport` (empty without a report or reference records)."""
        return dict(self.report.probe) if self.report is not None else {}

    def __str__(self) -> str:
        where = f"\nreport: {self.report.out_dir}" if self.report is not None else ""
        return format_table(self.metrics, digits=3) + "".join(f"\nnote: {note}" for note in self.notes) + where


RecordsSpec = pd.DataFrame | str | os.PathLike
"""Labeled records: a DataFrame, or a file `load_records` reads (named in error messages)."""


def _records(data: RecordsSpec, name: str) -> tuple[pd.DataFrame, str]:
    """``(frame, how to name it in messages)`` of records given as a frame or a file."""
    if isinstance(data, pd.DataFrame):
        return data, f"the {name} records"
    if isinstance(data, str | os.PathLike):
        return load_records(data), os.fspath(data)
    raise TypeError(f"{name} must be a DataFrame or a file of records, got {type(data).__name__}")


_INVISIBLE = re.compile("[\\s\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]+")
"""Whitespace and invisible characters (zero-width spaces and joiners, direction marks, BOM)."""


def _check_records(frame: pd.DataFrame, where: str, template: TextTemplate, label_column: str) -> None:
    """Refuse records the metrics would silently misread, before anything is encoded.

    Every field of the template and the label column must be columns; no label may be
    missing; no record may render to a blank text (invisible characters count as blank), as
    `refinery_quaterion.search` refuses them too.
    """
    template.validate(frame.columns, source=where)
    if label_column not in frame.columns:
        raise ValueError(f"{where} has no label column {label_column!r}; columns: {list(frame.columns)}")
    missing = frame.index[frame[label_column].isna().to_numpy()]
    if len(missing):
        raise ValueError(f"{where}: {len(missing)} record(s) have no label in column {label_column!r} (first: "
                         f"record {missing[0]}); label them or drop them")
    blank = [i for i, text in enumerate(template.render_many(frame.to_dict(orient="records")))
             if not _INVISIBLE.sub("", text)]
    if blank:
        raise ValueError(f"{where}: {len(blank)} record(s) render to an empty text with template {template.spec!r} "
                         f"(first: record {blank[0]}); fill or drop them")


def evaluate_model(
    model: EmbeddingModel | str | os.PathLike,
    test: RecordsSpec,
    config: EvalConfig | None = None,
    *,
    reference: RecordsSpec | Sequence[str | os.PathLike] | None = None,
    report_dir: str | os.PathLike | None = None,
    embedding_cache: CacheSpec = True,
    overwrite: bool = False,
) -> EvaluationOutcome:
    """Compare the raw encoder with the fine-tuned model on labeled test records.

    Precision@k (over all queries), MRR, mAP and R-precision for ``"raw"`` (the pretrained
    encoder alone: for a model trained with ``trainable_encoder`` its pretrained weights are
    loaded fresh) and ``"fine-tuned"`` (encoder + trained head); with ``report_dir`` and
    ``reference`` records, also a linear probe trained on ``reference`` and tested on
    ``test`` for each. The raw vectors are computed once (and cached); the fine-tuned ones
    apply the head to them.

    The records are checked before anything is encoded: every field of the model's text
    template and ``config.label_column`` must be a column (a missing one would embed empty
    texts and give plausible but meaningless metrics).

    Args:
        model: A loaded model or the folder of a saved one.
        test: Test records with the model's text fields and the label column: a DataFrame
            or a file (``.json``/``.jsonl``/``.csv``..., see `load_records`).
        config: How to evaluate: ks, label column, raw comparison, batch size, progress and
            the probe's classifier (default `EvalConfig()`).
        reference: Records to train the linear probe on (e.g. train + validation): a
            DataFrame, a file, or a list of files (concatenated).
        report_dir: Write the report folder (metrics.json/.md/.csv + PNG plots) there;
            ``None`` only computes the metrics table.
        embedding_cache: As in `train_model`; used when ``model`` is a folder.
        overwrite: Replace an existing ``report_dir``.

    Returns:
        An `EvaluationOutcome` (its ``report`` is set when ``report_dir`` is given).

    Raises:
        ValueError: If the records lack a field of the model's template or the label
            column (naming the column and the file), ``test`` has fewer than 2 records, or
            no k of ``config.ks`` fits them.
        FileExistsError: If ``report_dir`` exists and ``overwrite`` is false (checked first).
        SettingError: If ``report_dir`` is, contains or lies inside the model folder, a records
            file or the embedding cache (checked first).
        TypeError: For a ``config`` that is not an `EvalConfig`.
    """
    started = time.perf_counter()
    if config is not None and not isinstance(config, EvalConfig):
        raise TypeError(f"config must be an EvalConfig, got {type(config).__name__}")
    config = config or EvalConfig()
    refuse_output_over_inputs(report_dir, _input_paths(model, test, reference, embedding_cache),
                              setting="report_dir")
    if report_dir is not None and os.path.lexists(report_dir) and not overwrite:
        raise OutputExistsError(report_dir)
    if not isinstance(model, EmbeddingModel):
        model = load(model, embedding_cache=embedding_cache)
    template = TextTemplate.coerce(model.template)
    test, test_name = _records(test, "test")
    _check_records(test, test_name, template, config.label_column)
    reference = _reference_records(reference, template, config.label_column)
    usable_ks = _usable_ks(config.ks, len(test), test_name)

    labels = test[config.label_column].astype(str).to_numpy()
    raw = model.encode_raw(test, batch_size=config.batch_size, progress=config.progress)
    embeddings = {"fine-tuned": model.apply_head(raw)}
    baseline = _baseline(model) if config.compare_raw else None
    if baseline is not None:
        embeddings = {"raw": raw if baseline is model else baseline.encode(test, batch_size=config.batch_size,
                                                                           progress=config.progress), **embeddings}
    notes = duplicate_text_note(template(record) for record in test.to_dict("records"))
    if report_dir is None:
        table = compare(embeddings, labels, ks=usable_ks)
        return EvaluationOutcome(metrics=table, report=None, seconds=time.perf_counter() - started,
                                 notes=notes + label_notes(labels))

    probe = _probe_sets(model, baseline, reference, embeddings, labels, config) if reference is not None else None
    report = evaluation_report(
        report_dir,
        embeddings,
        labels,
        ks=usable_ks,
        probe=probe,
        probe_config=config.probe,
        title=f"Retrieval evaluation: {len(test)} queries",
        overwrite=overwrite,
        notes=notes,
    )
    return EvaluationOutcome(metrics=report.metrics, report=report, seconds=time.perf_counter() - started,
                             notes=list(report.notes))


def _input_paths(model: EmbeddingModel | str | os.PathLike, test: RecordsSpec,
                 reference: RecordsSpec | Sequence[str | os.PathLike] | None,
                 embedding_cache: CacheSpec) -> dict[str, str | os.PathLike | None]:
    """The files and folders `evaluate_model` reads (``None`` for those given as data)."""
    def path(value: Any) -> str | os.PathLike | None:
        return value if isinstance(value, str | os.PathLike) else None

    model_path = model.path if isinstance(model, EmbeddingModel) else path(model)
    inputs: dict[str, str | os.PathLike | None] = {"the model": model_path, "the test records": path(test)}
    parts = [reference] if reference is None or isinstance(reference, pd.DataFrame | str | os.PathLike) else reference
    for i, part in enumerate(parts):
        inputs[f"the reference records {i + 1}" if len(parts) > 1 else "the reference records"] = path(part)
    cache = embedding_cache if not isinstance(embedding_cache, bool) else None
    inputs["the embedding cache"] = getattr(cache, "folder", None) or path(cache)
    return inputs


def _reference_records(reference: RecordsSpec | Sequence[str | os.PathLike] | None, template: TextTemplate,
                       label_column: str) -> pd.DataFrame | None:
    """The reference records as one checked frame (a list of parts concatenated), or ``None``."""
    if reference is None:
        return None
    if isinstance(reference, pd.DataFrame | str | os.PathLike):
        frame, where = _records(reference, "reference")
        _check_records(frame, where, template, label_column)
        return frame
    parts = [_records(part, "reference") for part in reference]
    for frame, where in parts:
        _check_records(frame, where, template, label_column)
    return pd.concat([frame for frame, _ in parts], ignore_index=True) if parts else None


def _usable_ks(ks: Sequence[int], n_test: int, test_name: str) -> list[int]:
    """The ks that fit ``n_test`` records (at most ``n_test - 1`` neighbours)."""
    if n_test < 2:
        raise ValueError(f"need at least 2 test records, got {n_test} in {test_name}")
    usable = sorted({int(k) for k in ks if 1 <= int(k) <= n_test - 1})
    if not usable:
        raise ValueError(f"no k in {list(ks)} fits {n_test} test records")
    return usable


def _baseline(model: EmbeddingModel) -> Any:
    """What embeds the ``raw`` row: ``model`` itself (its frozen encoder is the pretrained one) or, for a
    model whose encoder was fine-tuned, the pretrained encoder loaded fresh."""
    config = model.model_config
    if config is None or not config.trainable_encoder:
        return model
    from refinery_quaterion.model.encoder import TransformerEncoder

    encoder = model.encoder
    return TransformerEncoder.from_pretrained(config.pretrained, template=encoder.template.spec,
                                              pooling=encoder.pooling, max_length=encoder.max_length,
                                              normalize=encoder.normalize, embedding_cache=encoder.embedding_cache,
                                              backend="torch")


def _probe_sets(model: EmbeddingModel, baseline: Any, reference: pd.DataFrame, embeddings: dict[str, Any],
                labels: Any, config: EvalConfig) -> dict[str, ProbeSet] | None:
    """What the linear probe of each model trains on (the reference records) and tests on."""
    if not len(reference):
        return None
    ref_raw = model.encode_raw(reference, batch_size=config.batch_size, progress=config.progress)
    ref_labels = reference[config.label_column].astype(str).to_numpy()
    ref_embeddings = {"fine-tuned": model.apply_head(ref_raw)}
    if baseline is not None:
        ref_embeddings["raw"] = ref_raw if baseline is model else baseline.encode(
            reference, batch_size=config.batch_size, progress=config.progress)
    return {name: ProbeSet(ref_embeddings[name], ref_labels, emb, labels) for name, emb in embeddings.items()}
