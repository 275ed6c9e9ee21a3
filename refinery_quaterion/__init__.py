"""refinery-quaterion: fine-tuned text embeddings for similarity search from refinery labels.

The compat shims are applied first, so every submodule can import quaterion safely.
"""

from refinery_quaterion import _compat  # noqa: F401  (must stay the first import)

__version__ = "0.1.0"
