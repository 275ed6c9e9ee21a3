"""``search`` and ``index``: embed records into a Qdrant index and query it."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refinery_quaterion._io import refuse_output_over_inputs
from refinery_quaterion.cli._common import (
    CliError,
    add_model_command,
    add_runtime_args,
    load_model,
    model_folder,
    one_line,
    progress,
    records_file,
    status,
)
from refinery_quaterion.cli._errors import is_qdrant_error
from refinery_quaterion.errors import api_fix, api_setting
from refinery_quaterion.scale.config import RUNTIMES


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``search`` and ``index`` to the subparsers ``sub``."""
    p = add_model_command(sub, "search", parents, data="records to search",
                          help="nearest records to a query (embedded Qdrant Edge)",
                          description="Index DATA with the model in embedded Qdrant Edge (in memory, or "
                          "--index-path to keep it) and print the k nearest records to each query. DATA is always "
                          "read: a kept index is rebuilt when the model or DATA changed since it was built, else "
                          "reused.")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query text(s)")
    p.add_argument("-k", type=int, default=5, help="results per query (default: %(default)s)")
    p.add_argument("--label", default=None, help="only return records with this label")
    p.add_argument("--index-path", type=Path, default=None,
                   help="keep the index in this folder and reuse it while the model and DATA are unchanged")
    _add_index_args(p)
    add_runtime_args(p)
    p.set_defaults(func=_cmd_search, on_interrupt=lambda a: "an interrupted index is rebuilt by the next run")

    p = add_model_command(sub, "index", parents, data="records to index",
                          help="upload records to a Qdrant server or folder",
                          description="Embed DATA with the model and upload it to a Qdrant server/cluster (--url) "
                          "or an embedded index folder (--path), streamed in bounded memory. A rerun (after an "
                          "interrupt, or on a grown file) embeds only records that are new or changed; records "
                          "already indexed are skipped. An index built with another model is refused unless "
                          "--rebuild is given.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", default=None, help="Qdrant server URL, e.g. http://localhost:6333")
    target.add_argument("--path", type=Path, default=None,
                        help="embedded Qdrant Edge folder (new, empty, or an index)")
    target.add_argument("--shards", type=Path, default=None, metavar="DIR",
                        help="with --ray: write Parquet shards of (id, vector, payload) to DIR instead of an index")
    ray = p.add_argument_group("scale-out on Ray (needs refinery-quaterion[scale])")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="encode on Ray with the model's ONNX (or OpenVINO, --ray-runtime) export: a local Ray on "
                     "this machine, or the cluster at ADDRESS ('auto', 'host:6379', 'ray://host:10001')")
    ray.add_argument("--workers", type=int, default=2, help="with --ray: encoder actors (default: %(default)s)")
    ray.add_argument("--quantize", choices=["int8"], default=None,
                     help="with --ray: run the int8 model (faster; cosine ~0.99 to the model's own vectors)")
    ray.add_argument("--ray-runtime", dest="runtime", choices=list(RUNTIMES), default="onnx",
                     help="with --ray: what runs the export in the actors: onnx (ONNX Runtime) or openvino (faster on "
                     "Intel CPUs; its int8 model is calibrated on the first records; needs refinery-quaterion"
                     "[openvino]) (default: %(default)s)")
    p.add_argument("--api-key", default=None, help="Qdrant API key (Qdrant Cloud)")
    p.add_argument("--collection", default="refinery", help="collection name (default: %(default)s)")
    p.add_argument("--id-field", default=None, help="record field with a unique id (default: derived from the text)")
    p.add_argument("--batch-size", type=int, default=256, help="points per upload batch (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=4096, metavar="N",
                   help="records read, embedded and written at a time; bounds the memory (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1,
                   help="upload streams to a Qdrant server (default: %(default)s)")
    p.add_argument("--rebuild", action="store_true",
                   help="make the collection hold exactly DATA: empty it when it was built with another model "
                   "or from other records, and re-embed (nothing is done when it is up to date)")
    _add_index_args(p)
    add_runtime_args(p)
    p.set_defaults(func=_cmd_index, on_interrupt=lambda a: "what was indexed stays searchable; run the same "
                   "command again to continue (--rebuild starts over)")


def _add_index_args(p: argparse.ArgumentParser) -> None:
    """The options of `IndexConfig` that both commands take: HNSW graph, search, quantization, on-disk vectors."""
    defaults = _defaults()
    group = p.add_argument_group("index settings")
    group.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m,
                       help="HNSW edges per node (default: %(default)s); build-time")
    group.add_argument("--hnsw-ef-construct", type=int, default=defaults.hnsw_ef_construct,
                       help="HNSW candidates while building (default: %(default)s); build-time")
    group.add_argument("--search-ef", type=int, default=defaults.search_ef,
                       help="HNSW candidates per query: more is better recall, slower (default: %(default)s)")
    group.add_argument("--exact", action="store_true", help="search every vector exactly (no HNSW)")
    group.add_argument("--quantization", choices=["int8"], default=None,
                       help="int8 scalar quantization, rescored (4x smaller vectors in memory); build-time")
    group.add_argument("--oversampling", type=float, default=defaults.oversampling,
                       help="with --quantization: candidates fetched per hit and rescored (default: %(default)s)")
    group.add_argument("--on-disk", action="store_true", help="keep the full vectors on disk (memory-mapped)")


def _defaults() -> Any:
    from refinery_quaterion.search.config import IndexConfig

    return IndexConfig()


def _index_config(args: argparse.Namespace, **fields: Any) -> Any:
    """The `IndexConfig` of the options (a bad value is one line naming its option)."""
    from refinery_quaterion.search.config import IndexConfig

    options = {"hnsw_m": "--hnsw-m", "hnsw_ef_construct": "--hnsw-ef-construct", "search_ef": "--search-ef",
               "oversampling": "--oversampling", "batch_size": "--batch-size", "parallel": "--parallel"}
    values = {name: getattr(args, name) for name in options if hasattr(args, name)}
    try:
        return IndexConfig(exact=args.exact, quantization=args.quantization, on_disk=args.on_disk, **values,
                           **fields)
    except ValueError as err:
        message = one_line(err)
        for name, flag in options.items():
            message = message.replace(f"IndexConfig.{name}", flag)
        raise CliError(message) from err


def _rebuild_flag(fix: Any) -> str:
    return "pass --rebuild" if fix.setting == "if_stale" else api_fix(fix)


@contextlib.contextmanager
def _qdrant(location: str, *, opening: bool = False) -> Iterator[None]:
    """Turn the Qdrant client's errors (unreachable server; on ``opening``, a locked folder) into one line."""
    from refinery_quaterion.search.collection import StaleIndexError

    try:
        yield
    except StaleIndexError as err:  # its fix, if_stale="rebuild", is the --rebuild flag here
        raise CliError(one_line(err.render(api_setting, _rebuild_flag))) from err
    except ConnectionError as err:
        raise CliError(one_line(err)) from err  # an unreachable --url (the message names it)
    except RuntimeError as err:
        if not opening:
            raise
        raise CliError(one_line(err)) from err  # an index folder open elsewhere (the message names it)
    except Exception as err:
        if not is_qdrant_error(err):
            raise
        detail = one_line(err) or type(err).__name__
        raise CliError(f"cannot use the Qdrant server at {location}: {detail}") from err


def _open_index(model: Any, location: str, **options: Any) -> Any:
    from refinery_quaterion.search import SimilarityIndex

    with _qdrant(location, opening=True):
        return SimilarityIndex(model, **options)


def _cmd_search(args: argparse.Namespace) -> None:
    from refinery_quaterion.data.dataset import load_records

    if args.k < 1:
        raise CliError(f"-k must be >= 1, got {args.k}")
    model_folder(args.model)
    refuse_output_over_inputs(args.index_path, _inputs(args), setting="index_path")
    records = load_records(records_file(args.data, "DATA"))
    model = load_model(args)
    where = str(args.index_path) if args.index_path is not None else "memory"
    config = _index_config(args)
    with _open_index(model, where, path=args.index_path, config=config, if_stale="rebuild") as index:
        with _qdrant(where):
            written = index.build(records, progress=progress(args))
        if args.index_path is None:
            status(args, f"embedded {written} records (in-memory index; --index-path keeps it)")
        elif index.rebuilt:
            status(args, f"rebuilt the index at {where} ({written} records): {index.rebuilt}")
        elif written:
            status(args, f"built the index at {where} from {args.data} ({written} records; new index, or DATA "
                   "changed)")
        else:
            status(args, f"the index at {where} is up to date ({len(index)} records from {args.data})")
        if args.label is not None and index.count(filter_label=args.label) == 0:
            print(f"note: no record of {args.data} has the label {args.label!r} (the model knows it), so --label "
                  "matches nothing and every query finds no record")
        for query in args.queries:
            print(f"\n{query}")
            for rank, hit in enumerate(index.search(query, k=args.k, filter_label=args.label), 1):
                text = model.template(hit.record)
                print(f"  {rank}. {hit.score:.3f}  [{hit.label}]  {text[:110]}")


def _cmd_index(args: argparse.Namespace) -> None:
    from refinery_quaterion.data.dataset import load_records
    from refinery_quaterion.search.streaming import index_records

    model_folder(args.model)
    refuse_output_over_inputs(args.path, _inputs(args), setting="path")
    refuse_output_over_inputs(args.shards, _inputs(args), setting="shards")
    if args.ray is not None or args.shards is not None:
        _index_on_ray(args)
        return
    data = records_file(args.data, "DATA")
    model = load_model(args)
    where = args.url or str(args.path)
    config = _index_config(args, collection=args.collection, id_field=args.id_field)
    with _open_index(model, where, path=args.path, url=args.url, api_key=args.api_key, config=config,
                     if_stale="rebuild" if args.rebuild else "error") as index:
        with _qdrant(where):
            if not args.rebuild:  # streamed in bounded memory; a rerun continues where the last one stopped
                result = index_records(index, data, chunk_size=args.chunk_size, progress=progress(args))
                skipped = f"; {result.skipped} already indexed" if result.skipped else ""
                print(f"indexed {result.written} records into {args.collection!r} at {where} "
                      f"({len(index)} points{skipped})")
                return
            written = index.build(load_records(data), batch_size=args.batch_size, progress=progress(args))
            why = f" ({index.rebuilt})" if index.rebuilt else ""
            if written:
                print(f"rebuilt {args.collection!r} at {where} from {written} records{why}")
            else:
                print(f"{args.collection!r} at {where} is up to date ({len(index)} points)")


def _inputs(args: argparse.Namespace) -> dict[str, Path]:
    """The inputs an index folder must not be, hold or lie inside: the model folder and the data file."""
    return {"MODEL_DIR": args.model, "DATA": args.data}


def _index_on_ray(args: argparse.Namespace) -> None:
    """``index --ray``: Ray encodes; a server gets the points from the actors, a folder from Parquet shards."""
    import tempfile

    from refinery_quaterion.scale import RayIndexConfig, index_with_ray

    if args.ray is None:
        raise CliError("--shards needs --ray (the shards are written by Ray's encoder actors)")
    if args.rebuild:
        raise CliError("--rebuild does not combine with --ray; rebuild the index without --ray, or use a new "
                       "--path or --collection")
    address = None if args.ray == "local" else args.ray
    config = RayIndexConfig(address=address, workers=args.workers, num_cpus=max(2, args.workers),
                            quantize=args.quantize, runtime=args.runtime, collection=args.collection,
                            id_field=args.id_field, batch_size=args.batch_size, progress=progress(args))
    if args.url is not None or args.shards is not None:
        target = {"url": args.url, "api_key": args.api_key} if args.url else {"out": args.shards}
        print(index_with_ray(args.model, args.data, config=config, **target))
        return
    args.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{args.path.name}-shards-", dir=args.path.parent) as scratch:
        result = index_with_ray(args.model, args.data, out=Path(scratch) / "shards", config=config)
        _load_shards(args, Path(scratch) / "shards")
    print(f"{result}; loaded into {args.collection!r} at {args.path}")


def _load_shards(args: argparse.Namespace, shards: Path) -> None:
    """Upsert Ray's Parquet shards into the embedded index at ``--path`` (one bulk load, HNSW built once)."""
    from refinery_quaterion.search.streaming import load_vector_shards

    model = load_model(args)
    config = _index_config(args, collection=args.collection, id_field=args.id_field)
    with _open_index(model, str(args.path), path=args.path, config=config, if_stale="error") as index:
        with _qdrant(str(args.path)):
            load_vector_shards(index, shards, progress=progress(args))
