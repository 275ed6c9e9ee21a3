"""What an index needs from a model: the `SupportsEncode` protocol, its checks, its fingerprint.

`model_fingerprint` identifies the vectors a model makes, so that an index can tell whether it
was built with the model it is opened with (after a retrain it was not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from refinery_quaterion.data.text import TextTemplate

if TYPE_CHECKING:
    from refinery_quaterion.data.dataset import LabelMap

__all__ = ["SupportsEncode", "model_fingerprint"]


@runtime_checkable
class SupportsEncode(Protocol):
    """What `refinery_quaterion.search.SimilarityIndex` needs from a model: the trained encoder satisfies it.

    Any object with these members works, e.g. a thin wrapper around another embedding model.
    An optional ``fingerprint()`` method (see `model_fingerprint`) lets an index detect that it
    was built with another model.
    """

    @property
    def dim(self) -> int:
        """Size of the embeddings `encode` returns."""
        ...

    @property
    def template(self) -> TextTemplate:
        """Renders a record as the text to embed (also used to derive point ids)."""
        ...

    @property
    def label_map(self) -> LabelMap:
        """The labels the model was trained on (used to check ``filter_label`` values)."""
        ...

    def encode(
        self,
        items: Sequence[Mapping[str, Any] | str],
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed ``items`` (records or texts) as a float32 array of shape ``(len(items), dim)``."""
        ...


def model_fingerprint(model: Any) -> str | None:
    """Identity of the vectors ``model`` makes, or ``None`` when it cannot be told.

    In this order:

    1. the model's own ``fingerprint()`` method, when it has one;
    2. its ``encoder.fingerprint()`` (e.g. `refinery_quaterion.model.trainable.TransformerEncoder`: a
       hash of the weights, tokenizer and pooling) combined with a SHA-1 over the head's
       ``state_dict`` (the ``head`` attribute, or ``model.head`` for a trainable model), so a
       retrained head changes the fingerprint even when the frozen encoder did not;
    3. ``None`` for anything else (the model cannot be identified; indexes then do not check it).

    Args:
        model: Any object with ``encode`` (see `SupportsEncode`).

    Returns:
        A hex string, or ``None``.
    """
    own = getattr(model, "fingerprint", None)
    if callable(own):
        value = own()
        return None if value is None else str(value)
    encoder_fingerprint = getattr(getattr(model, "encoder", None), "fingerprint", None)
    if not callable(encoder_fingerprint):
        return None
    encoder_value = encoder_fingerprint()
    if encoder_value is None:
        return None
    head = getattr(model, "head", None)
    if head is None:
        head = getattr(getattr(model, "model", None), "head", None)
    digest = hashlib.sha1(f"encoder:{encoder_value}".encode())
    if head is not None:
        digest.update(f"head:{type(head).__module__}.{type(head).__qualname__}".encode())
        state = head.state_dict() if callable(getattr(head, "state_dict", None)) else None
        if state is None:
            return None  # a head whose weights cannot be read cannot be identified
        _update_with_state(digest, state)
    return digest.hexdigest()


def _update_with_state(digest: Any, state: Mapping[str, Any]) -> None:
    """Feed a ``state_dict`` (names, dtypes, shapes and bytes of the tensors) into ``digest``."""
    for name in sorted(state):
        value = state[name]
        digest.update(str(name).encode())
        if hasattr(value, "detach"):  # a torch tensor
            import torch

            data = value.detach().to("cpu").contiguous()
            digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(json.dumps(repr(value)).encode())


def check_encoder(encoder: Any) -> None:
    """Raise ``TypeError`` unless ``encoder`` has ``encode()``, a positive int ``dim`` and a `TextTemplate`."""
    missing = [name for name in ("encode", "dim", "template") if not hasattr(encoder, name)]
    if missing:
        raise TypeError(
            f"encoder must have encode(), dim and template (see SupportsEncode); "
            f"{type(encoder).__name__} lacks {', '.join(missing)}"
        )
    if not callable(encoder.encode):
        raise TypeError(f"encoder.encode must be callable, got {type(encoder.encode).__name__}")
    dim = encoder.dim
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise TypeError(f"encoder.dim must be a positive int, got {dim!r}")
    if not isinstance(encoder.template, TextTemplate):
        raise TypeError(f"encoder.template must be a TextTemplate, got {type(encoder.template).__name__}")
