"""Ray on the driver: importing it, joining or starting a cluster, and reading the record files.

`ray_session` starts a local Ray (no address) or joins a cluster, failing fast with a
``ConnectionError`` naming an address nothing answers at; `read_records` turns the record
files (JSON Lines, CSV or Parquet; one file, a folder of shards or a list) into a Ray dataset.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from refinery_quaterion.scale.config import SCALE_EXTRA, RayIndexConfig

__all__ = ["READERS", "check_ray_address", "import_ray", "local_ray_options", "probe", "ray_session", "read_records",
           "source_files"]

READERS = {".jsonl": "read_json", ".ndjson": "read_json", ".json": "read_json", ".csv": "read_csv",
           ".parquet": "read_parquet"}
"""Record file suffixes -> the ``ray.data`` function that reads them."""

PROBE_SECONDS = 5.0
"""How long `probe` waits for a TCP connection."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data and pyarrow importable, or a one-line ``ImportError`` naming the extra."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"indexing on Ray needs ray[data] and pyarrow ({err.name} is not installed); "
                          f'install them with: pip install "{SCALE_EXTRA}"') from None
    return ray


def probe(host: str, port: int, what: str) -> None:
    """Open and close a TCP connection to ``host:port``, or raise a ``ConnectionError`` naming ``what``."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach {what}: {err.strerror or err}") from None


def ray_address_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address to probe, or ``None`` for ``"auto"``/``"local"``."""
    if address in ("auto", "local"):
        return None
    parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"Ray address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    return parts.hostname, port


def local_ray_options(config: RayIndexConfig) -> dict[str, Any]:
    """``ray.init`` options of the local Ray: ``config.num_cpus`` CPUs for the actors, one more for Ray Data.

    Ray Data lists the record files in a task that needs a CPU slot of its own; with every
    slot held by an encoder actor the run would wait forever. The extra slot is a scheduling
    slot, not a core: the actors' ONNX Runtime threads still add up to ``num_cpus``.
    """
    return {"num_cpus": config.num_cpus + 1, "include_dashboard": False, "log_to_driver": False}


def check_ray_address(address: str | None) -> None:
    """Raise a ``ConnectionError`` naming ``address`` when nothing answers there (``None``: nothing to check)."""
    endpoint = None if address is None else ray_address_endpoint(address)
    if endpoint is not None:
        probe(*endpoint, what=f"the Ray cluster at {address!r}")


@contextlib.contextmanager
def ray_session(ray: Any, config: RayIndexConfig) -> Iterator[None]:
    """Ray for the block: the running one, a local one (``address=None``), or the cluster at ``config.address``.

    A Ray this function started is shut down at the end.

    Raises:
        ConnectionError: If nothing answers at ``config.address``, or Ray cannot join it.
    """
    address = config.address
    check_ray_address(address)
    if ray.is_initialized():
        yield
        return
    try:
        if address is None:
            ray.init(**local_ray_options(config))
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError) as err:
        raise ConnectionError(f"cannot join the Ray cluster at {address!r}: {err}") from None
    try:
        yield
    finally:
        ray.shutdown()


def source_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[list[str], str]:
    """The record files of ``source`` and the ``ray.data`` reader for them.

    Args:
        source: A file, a folder (its record files, sorted by name), or a list of files and
            folders; all of one format. URLs (``s3://...``) are passed to Ray as they are.

    Returns:
        ``(paths, reader)``, the reader being a value of `READERS`.

    Raises:
        FileNotFoundError: If a path does not exist, or a folder holds no record files.
        ValueError: If a file has another suffix, the files mix formats, or ``source`` is empty.
    """
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    paths: list[str] = []
    for item in items:
        paths += _files_of(item)
    if not paths:
        raise ValueError("source names no record files")
    readers = {READERS[_suffix(path)] for path in paths}
    if len(readers) > 1:
        raise ValueError(f"source mixes file formats ({', '.join(sorted({_suffix(p) for p in paths}))}); "
                         "index one format per run")
    return paths, readers.pop()


def _files_of(item: str | os.PathLike[str]) -> list[str]:
    if isinstance(item, str) and "://" in item:
        _suffix(item)
        return [item]
    path = Path(item)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in READERS)
        if not files:
            raise FileNotFoundError(f"{path} holds no record files ({', '.join(READERS)})")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"record file {str(path)!r} does not exist")
    _suffix(str(path))
    return [str(path)]


def _suffix(path: str) -> str:
    suffix = Path(urlsplit(path).path).suffix.lower()
    if suffix not in READERS:
        raise ValueError(f"{path}: unknown record file type {suffix or '(no suffix)'!r}; "
                         f"expected one of {', '.join(READERS)}")
    return suffix


IO_CPUS = 0
"""CPUs Ray reserves for a read or write task: none, so that the encoder actors may reserve every
CPU without starving the reads that feed them (reading and writing take little CPU time)."""


def read_records(ray: Any, paths: list[str], reader: str) -> Any:
    """A Ray dataset of the records in ``paths`` (one block per file or more)."""
    read = getattr(ray.data, reader)
    if reader == "read_json":
        return read(paths, lines=not paths[0].lower().endswith(".json"), num_cpus=IO_CPUS)
    return read(paths, num_cpus=IO_CPUS)
