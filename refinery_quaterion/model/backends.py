"""Encoder backends: what runs the frozen transformer pass of a `TransformerEncoder`.

The encoder tokenizes, sorts texts by token length and pads each batch to its longest text
(`length_sorted_batches`); a backend turns one padded batch into pooled vectors. Five are
registered in `BACKENDS`:

* ``"torch"`` -- the transformer itself (the only one a trainable encoder can use);
* ``"onnx"`` -- the same computation (transformer + pooling + the encoder's normalisation) as
  an ONNX graph run by ONNX Runtime; the same vectors (cosine >= 0.9999), faster on CPU;
* ``"onnx-int8"`` -- that graph with dynamically quantised int8 weights (per-channel):
  faster again, slightly different vectors;
* ``"openvino"`` -- that graph compiled by OpenVINO for the CPU, fp32: the torch vectors, faster
  than ONNX Runtime on Intel CPUs;
* ``"openvino-int8"`` -- that graph statically quantised to int8 by NNCF, calibrated on the
  user's own texts (`refinery_quaterion.model.openvino_backend`): the fastest on CPUs with
  int8 instructions (VNNI), close vectors.

The default is ``"auto"`` (`DEFAULT_BACKEND`), which `resolve_backend` turns, for a frozen
encoder on a CPU-only machine, into the fastest backend whose vectors are the torch vectors:
``"openvino"`` where OpenVINO is installed, else ``"onnx"`` (onnx and onnxruntime are core
dependencies); and into ``"torch"`` for a trainable encoder, on a machine with a CUDA GPU, or
where neither runtime is installed. The exact backends keep every figure -- the same vectors,
so the same search quality -- and encode faster on CPU; the int8 backends are faster still but
move the AG News metrics a little, so they are one setting away rather than the default (all
measured by ``benchmarks/bench_export.py``, tables in the guide "Use your model elsewhere").

The ONNX graph (or OpenVINO IR) is built once per encoder fingerprint and backend and kept (written
atomically, umask respected) in the ``.models`` folder of the encoder's embedding cache, or of
`refinery_quaterion.model.cache.default_cache_dir` when it has none; later runs only load it. One
``onnxruntime.InferenceSession`` per encoder runs it, with as many intra-op threads as this
process may use CPUs (`usable_cpus`). The ONNX backends need the ``refinery-quaterion[onnx]``
extra (onnx, onnxruntime), the OpenVINO ones ``refinery-quaterion[openvino]`` (openvino, nncf),
imported only when a backend is first used.

A backend's identity (`EncoderBackend.key`: name, quantisation, opset, the versions of
onnxruntime, or of openvino and nncf, the encoder's ``calibration_size`` for ``"openvino-int8"``)
enters the encoder's fingerprint, so the `refinery_quaterion.model.cache.EmbeddingCache` never
mixes vectors of different backends; the torch backend adds nothing, so caches written before
backends existed stay valid.

Adding a backend is one builder plus its registration; the builder gets the encoder and
returns a `BatchRunner`::

    @register_backend("my-runtime", description="one line for the docs", extra="my-extra")
    def _my_runtime(encoder: BackendEncoder) -> BatchRunner:
        session = load_my_runtime(encoder)  # build it from encoder.transformer, or load it
        return lambda input_ids, attention_mask: session.run(input_ids, attention_mask)

This module imports no torch, so `refinery_quaterion.model.config` validates backend names with it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from refinery_quaterion.errors import Fix, SettingError
from refinery_quaterion.model.openvino_backend import IR_FILE, OPENVINO_EXTRA, openvino_available
from refinery_quaterion.model.runtime import ONNX_EXTRA, ONNX_OPSET, length_sorted_batches, require_onnx
from refinery_quaterion.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BACKENDS",
    "BackendEncoder",
    "AUTO_BACKEND",
    "DEFAULT_BACKEND",
    "BatchRunner",
    "EncoderBackend",
    "calibrate",
    "check_backend",
    "embed_sorted",
    "cuda_visible",
    "models_dir",
    "onnx_available",
    "openvino_available",
    "register_backend",
    "resolve_backend",
]

class BackendEncoder(Protocol):
    """What a backend builder uses of its encoder: a `refinery_quaterion.model.encoder.TransformerEncoder`.

    (The encoder imports this module, so backends name the encoder by what they use of it.)
    """

    tokenizer: Any
    transformer: Any
    max_length: int
    pooling: str
    normalize: bool
    embedding_cache: Any
    backend: str
    calibration_size: int
    device: Any

    def backend_runner(self) -> BatchRunner:
        """The runner of the encoder's backend, built on first use."""
        ...

    def embed_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled vectors of one padded batch, by the transformer in torch."""
        ...

    def fingerprint(self) -> str:
        """What identifies the encoder's vectors."""
        ...

    def describe(self) -> dict[str, Any]:
        """The encoder's settings as JSON data."""
        ...


BatchRunner = Callable[[np.ndarray, np.ndarray], Any]
"""``run(input_ids, attention_mask) -> vectors``: one padded batch (int64 arrays of shape
``(batch, tokens)``) to its pooled vectors, ``(batch, dim)``, as a float torch tensor or a
float32 numpy array. A runner may also have ``run_all(batches)``: the vectors of an iterable of
``(input_ids, attention_mask)`` batches, in order; `embed_sorted` then hands it all the batches of
a call at once (the OpenVINO runners run several of them in parallel streams)."""

AUTO_BACKEND = "auto"
"""Not a backend but a choice: for a frozen encoder on a machine without a CUDA GPU ``"openvino"``
where OpenVINO is installed, else ``"onnx"`` where ONNX Runtime is; otherwise ``"torch"`` (see
`resolve_backend`). Always a backend whose vectors are the torch vectors, never an int8 one."""

OPENVINO_BATCH = 16
"""Texts per batch of the OpenVINO backends (at most): on 2 cores, 1,000 AG News texts ran 17 % faster
in fp32 at 16 than at 64 (8: about the same), and int8 the same at 8 to 64 (``bench_export.py`` (e))."""

DEFAULT_BACKEND = AUTO_BACKEND
"""What a `TransformerEncoder` and `refinery_quaterion.model.config.ModelConfig` use by default."""

MODELS_FOLDER = ".models"
"""Folder inside an embedding cache that holds the backends' ONNX graphs (one sub-folder per fingerprint)."""
_GRAPH_FILE = "model.onnx"
_TRACE_TEXTS = ["a short text", "a somewhat longer text, so that the first one is padded"]
_CALIBRATION: contextvars.ContextVar[Sequence[Sequence[int]] | None] = contextvars.ContextVar(
    "calibration_tokens", default=None)
"""Token ids of the texts being encoded while a backend is built (what int8 calibration uses)."""


@dataclass(frozen=True)
class EncoderBackend:
    """One registered backend.

    Attributes:
        name: What ``encoder_backend=`` takes, e.g. ``"onnx-int8"``.
        build: ``build(encoder) -> BatchRunner``, called once per encoder when it first encodes.
        description: One line for the docs and help texts.
        quantization: ``"int8"`` for a quantised backend, else ``None``.
        trainable: Whether a trainable (fine-tuned) encoder can use it; only ``"torch"`` can.
        reference: The reference computation (``"torch"``): adds nothing to the encoder's
            fingerprint.
        packages: Distributions whose versions enter the fingerprint (their numerics decide
            the vectors), e.g. ``("onnxruntime",)``.
        settings: Further settings that decide the vectors, e.g. ``{"opset": 17}``; a callable
            value is a setting of the encoder: ``value(encoder)`` when the key is read.
        extra: The ``refinery-quaterion[...]`` extra it needs, if any.
        example: A usage example for the docs (``ModelConfig(encoder_backend="onnx")``).
        max_batch_size: Texts per batch this backend runs at most, whatever batch size is asked
            for (`embed_sorted`); ``None``: as asked. Chosen by measurement: the OpenVINO
            backends run their streams fastest on small batches (``benchmarks/bench_export.py``,
            part (e)).
    """

    name: str
    build: Callable[[BackendEncoder], BatchRunner]
    description: str
    quantization: str | None = None
    trainable: bool = False
    reference: bool = False
    packages: tuple[str, ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()
    extra: str | None = None
    example: str = ""
    max_batch_size: int | None = None

    def key(self, encoder: BackendEncoder) -> dict[str, Any]:
        """What besides the encoder's weights and settings decides this backend's vectors on ``encoder``.

        Empty for the reference backend; else name, quantisation, settings and package versions.
        """
        if self.reference:
            return {}
        settings = {name: value(encoder) if callable(value) else value for name, value in self.settings}
        return {"backend": self.name, "quantization": self.quantization, **settings,
                "versions": {package: _version(package) for package in self.packages}}


def _make_backend(
    name: str,
    build: Callable[[BackendEncoder], BatchRunner],
    *,
    description: str,
    example: str,
    quantization: str | None = None,
    trainable: bool = False,
    reference: bool = False,
    packages: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    extra: str | None = None,
    max_batch_size: int | None = None,
) -> EncoderBackend:
    """An `EncoderBackend` from a registration (the ``make_entry`` of `BACKENDS`)."""
    return EncoderBackend(name, build, description, quantization, trainable, reference, tuple(packages),
                          tuple(sorted((settings or {}).items())), extra, example, max_batch_size)


def _needs(backend: EncoderBackend) -> str:
    """What the backend needs installed (the docs table's last column)."""
    return f"`{backend.extra}`" if backend.extra else "the core install"


BACKENDS: Registry[EncoderBackend] = Registry("encoder backend", "encoder backends", _make_backend,
                                              usage='ModelConfig(encoder_backend="{name}")', details=("Needs", _needs))
"""Registered backends by name: ``"torch"``, ``"onnx"``, ``"onnx-int8"``, ``"openvino"``, ``"openvino-int8"``
(``"auto"`` picks one)."""


def register_backend(
    name: str,
    *,
    description: str,
    quantization: str | None = None,
    trainable: bool = False,
    reference: bool = False,
    packages: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    extra: str | None = None,
    max_batch_size: int | None = None,
) -> Callable[[Callable[[BackendEncoder], BatchRunner]], Callable[[BackendEncoder], BatchRunner]]:
    """Decorator: register a backend builder under ``name`` (arguments as in `EncoderBackend`).

    Raises:
        ValueError: If ``name`` is already registered.
    """
    return BACKENDS.register(name, description, quantization=quantization, trainable=trainable, reference=reference,
                             packages=packages, settings=settings, extra=extra, max_batch_size=max_batch_size)


def check_backend(name: Any, *, trainable: bool = False) -> str:
    """Return ``name`` if it is ``"auto"`` or a registered backend a (``trainable``) encoder can use.

    Raises:
        ValueError: For an unknown name (listing the valid ones), or a backend that cannot
            run a trainable encoder.
    """
    if not isinstance(name, str) or (name not in BACKENDS and name != AUTO_BACKEND):
        raise ValueError(f"encoder_backend must be one of {[AUTO_BACKEND, *BACKENDS]}, got {name!r}")
    if name == AUTO_BACKEND:
        return name
    if trainable and not BACKENDS[name].trainable:
        usable = [n for n, b in BACKENDS.items() if b.trainable]
        raise SettingError("{encoder_backend} runs a frozen encoder only (it serves the frozen pass of training and "
                           "evaluation)", settings={"encoder_backend": name},
                           fixes=(*(Fix("encoder_backend", u) for u in usable), Fix("trainable_encoder", False)))
    return name


def onnx_available() -> bool:
    """Whether onnx and onnxruntime are installed (checked without importing them)."""
    from importlib.util import find_spec

    return all(find_spec(package) is not None for package in ("onnx", "onnxruntime"))


def cuda_visible() -> bool:
    """Whether torch (when it is already imported) sees a CUDA GPU; never imports torch itself."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:  # a broken CUDA setup: as if there were no GPU
        return False


def resolve_backend(name: str, *, trainable: bool = False) -> str:
    """The registered backend that ``name`` means for a (``trainable``) encoder.

    ``"auto"`` becomes, for a frozen encoder on a machine without a CUDA GPU, the fastest backend
    whose vectors are the torch vectors: ``"openvino"`` when `openvino_available` and the ONNX
    export can run (`onnx_available`), else ``"onnx"`` when `onnx_available`; else ``"torch"`` (a
    trainable encoder; a GPU, where torch encodes faster than either runtime on the CPU; the
    runtimes missing). Int8 is never chosen automatically. Any other name is returned as it is
    (after `check_backend`).

    Raises:
        ValueError: As `check_backend`.
    """
    name = check_backend(name, trainable=trainable)
    if name != AUTO_BACKEND:
        return name
    if trainable or cuda_visible() or not onnx_available():
        return "torch"
    return "openvino" if openvino_available() else "onnx"


def embed_sorted(encoder: BackendEncoder, texts: Sequence[str], *, batch_size: int, bar: Any = None) -> Tensor:
    """Vectors of ``texts`` by the encoder's backend, in input order, as a float tensor.

    The texts are tokenized (truncated to the encoder's ``max_length``, not padded) and run in
    `length_sorted_batches` of ``batch_size`` texts (at most the backend's ``max_batch_size``);
    ``bar`` (a tqdm bar) is advanced by each batch.
    """
    import torch

    tokenizer = encoder.tokenizer
    token_ids = tokenizer(list(texts), truncation=True, max_length=encoder.max_length, padding=False,
                          return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with _calibrating_on(token_ids):  # a backend built now (int8 calibration) sees what it will encode
        run = encoder.backend_runner()
    batch_size = min(batch_size, BACKENDS[encoder.backend].max_batch_size or batch_size)
    batches = list(length_sorted_batches(token_ids, batch_size, pad_id))
    run_all = getattr(run, "run_all", None)  # a runner may run several batches at once (OpenVINO streams)
    outputs = run_all((ids, mask) for _, ids, mask in batches) if run_all else (run(i, m) for _, i, m in batches)
    pieces, order = [], []
    for (rows, _, _), vectors in zip(batches, outputs, strict=True):
        pieces.append(torch.as_tensor(vectors))
        order.append(rows)
        if bar is not None:
            bar.update(len(rows))
    embeddings = torch.cat(pieces)
    restore = torch.from_numpy(np.argsort(np.concatenate(order))).to(embeddings.device)
    return embeddings[restore]


def calibrate(encoder: BackendEncoder, texts: Sequence[str]) -> None:
    """Build the encoder's backend now, calibrating it (``"openvino-int8"``) on ``texts``.

    Without this call a calibrated backend calibrates on the first texts it is asked to
    encode. Nothing happens for a backend that is already built, or whose model is already in
    the cache folder (delete the fingerprint's folder under `models_dir` to calibrate again).
    Backends without calibration are simply built.
    """
    token_ids = encoder.tokenizer(list(texts), truncation=True, max_length=encoder.max_length, padding=False,
                                  return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    with _calibrating_on(token_ids):
        encoder.backend_runner()


@contextlib.contextmanager
def _calibrating_on(token_ids: Sequence[Sequence[int]]) -> Iterator[None]:
    """Offer ``token_ids`` as the calibration sample to a backend built inside the block."""
    reset = _CALIBRATION.set(token_ids)
    try:
        yield
    finally:
        _CALIBRATION.reset(reset)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------
# The backends
# --------------------------------------------------------------------------------------


@register_backend("torch", description="the transformer in torch (the reference; also for a trainable encoder)",
                  trainable=True, reference=True)
def _torch_backend(encoder: BackendEncoder) -> BatchRunner:
    import torch

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        device = encoder.device
        return encoder.embed_tokens(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device))

    return run


@register_backend("onnx", description="ONNX Runtime, fp32: the torch vectors, faster on CPU "
                  "(what 'auto' picks without OpenVINO)",
                  packages=("onnxruntime",), settings={"opset": ONNX_OPSET}, extra=ONNX_EXTRA)
def _onnx_backend(encoder: BackendEncoder) -> BatchRunner:
    return _onnx_runner(encoder, quantize=None)


@register_backend("onnx-int8", description="ONNX Runtime, int8 weights (per-channel): fastest on CPU, close vectors",
                  quantization="int8", packages=("onnxruntime",), settings={"opset": ONNX_OPSET}, extra=ONNX_EXTRA)
def _onnx_int8_backend(encoder: BackendEncoder) -> BatchRunner:
    return _onnx_runner(encoder, quantize="int8")


@register_backend("openvino", description="OpenVINO, fp32: the torch vectors, fastest exact backend on Intel CPUs "
                  "(what 'auto' picks where OpenVINO is installed)", packages=("openvino",),
                  settings={"opset": ONNX_OPSET}, extra=OPENVINO_EXTRA, max_batch_size=OPENVINO_BATCH)
def _openvino_backend(encoder: BackendEncoder) -> BatchRunner:
    return _openvino_runner(encoder, quantize=None)


@register_backend("openvino-int8", description="OpenVINO, int8 by NNCF static quantisation calibrated on your "
                  "texts: fastest on CPU, close vectors", quantization="int8", packages=("openvino", "nncf"),
                  settings={"opset": ONNX_OPSET, "calibration_size": operator.attrgetter("calibration_size")},
                  extra=OPENVINO_EXTRA, max_batch_size=OPENVINO_BATCH)
def _openvino_int8_backend(encoder: BackendEncoder) -> BatchRunner:
    return _openvino_runner(encoder, quantize="int8")


def models_dir(encoder: BackendEncoder) -> Path:
    """Where the encoder's ONNX graphs are kept: ``.models`` in its embedding cache folder
    (or in `refinery_quaterion.model.cache.default_cache_dir` when it has no cache)."""
    from refinery_quaterion.model.cache import default_cache_dir

    cache = encoder.embedding_cache
    return (cache.folder if cache is not None else default_cache_dir()) / MODELS_FOLDER


def _onnx_runner(encoder: BackendEncoder, *, quantize: str | None) -> BatchRunner:
    """Load (building it first if needed) the encoder's ONNX graph; return a runner over one session."""
    from refinery_quaterion.model.runtime import inference_session, quantize_int8

    require_onnx("onnx", "onnxruntime")
    folder = models_dir(encoder) / encoder.fingerprint()
    path = folder / _GRAPH_FILE
    session = None
    if path.is_file():
        with contextlib.suppress(Exception):  # a graph that does not load (damaged, other version) is rebuilt
            session = inference_session(path)
    if session is None:
        convert = (lambda fp32, tmp: quantize_int8(fp32, tmp / _GRAPH_FILE)) if quantize == "int8" else None
        _build_graph(encoder, folder, convert=convert)
        session = inference_session(path)
    output = session.get_outputs()[0].name

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run([output], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


def _openvino_runner(encoder: BackendEncoder, *, quantize: str | None) -> BatchRunner:
    """Load (building it first if needed) the encoder's OpenVINO IR; return a runner over one compiled model.

    The int8 model is calibrated on up to ``encoder.calibration_size`` of the texts being encoded
    (or given to `calibrate`).
    """
    from refinery_quaterion.model.openvino_backend import calibration_inputs, compile_ir, convert_onnx, require_openvino

    require_openvino("openvino", *(("nncf",) if quantize else ()))
    require_onnx("onnx")
    folder = models_dir(encoder) / encoder.fingerprint()
    path = folder / IR_FILE
    if path.is_file():
        with contextlib.suppress(Exception):  # a model that does not load (damaged, other version) is rebuilt
            return compile_ir(path)
    calibration = None
    if quantize == "int8":
        calibration = calibration_inputs(_CALIBRATION.get() or _trace_text_ids(encoder), encoder.calibration_size)
    _build_graph(encoder, folder, convert=lambda onnx_path, tmp: convert_onnx(onnx_path, tmp / IR_FILE,
                                                                              calibration=calibration))
    return compile_ir(path)


def _trace_text_ids(encoder: BackendEncoder) -> Sequence[Sequence[int]]:
    """Token ids of the trace texts: the calibration sample of last resort (a build outside `embed_sorted`)."""
    return encoder.tokenizer(_TRACE_TEXTS, truncation=True, max_length=encoder.max_length,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def _build_graph(encoder: BackendEncoder, folder: Path, *, convert: Callable[[Path, Path], None] | None) -> None:
    """Export the encoder (transformer + pooling + its normalisation) to ``folder``, atomically.

    Without ``convert`` the graph is ``folder/model.onnx``; with it, ``convert(fp32_graph, tmp)``
    writes the backend's model into the temporary folder ``tmp`` and the fp32 graph is dropped.
    """
    from refinery_quaterion._io import atomic_dir
    from refinery_quaterion.model.onnx_graph import EmbeddingGraph, export_graph

    sample = encoder.tokenizer(_TRACE_TEXTS, padding=True, truncation=True, max_length=encoder.max_length,
                               return_token_type_ids=False, return_tensors="np")
    graph = EmbeddingGraph(encoder.transformer, encoder.pooling, encoder.normalize, final_normalize=False)
    with atomic_dir(folder, overwrite=True) as tmp:
        fp32 = tmp / ("model_fp32.onnx" if convert else _GRAPH_FILE)
        export_graph(graph, fp32, sample["input_ids"], sample["attention_mask"], opset=ONNX_OPSET)
        if convert is not None:
            convert(fp32, tmp)
            fp32.unlink()
        info = {"fingerprint": folder.name, "backend": encoder.backend, "encoder": encoder.describe(),
                "key": BACKENDS[encoder.backend].key(encoder)}
        (tmp / "backend.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
