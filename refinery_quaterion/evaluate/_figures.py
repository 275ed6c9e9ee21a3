"""What every figure module shares: the ``.png`` path check and the atomic PNG write.

Every plot draws on its own `matplotlib.figure.Figure` (never through ``pyplot``, so no
global figure state or backend is touched), writes the PNG atomically (a temporary file
renamed on success, parent folders created) and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from refinery_quaterion._io import atomic_path

__all__ = ["png_path", "save_png"]


def png_path(path: str | os.PathLike) -> Path:
    """``path`` as a `Path`, checked to end in ``.png``.

    Raises:
        ValueError: The path does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (figures are written as PNG); got {str(path)!r}")
    return path


def save_png(fig: Figure, path: Path, dpi: int) -> Path:
    """Write ``fig`` to ``path`` as a PNG atomically and return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
