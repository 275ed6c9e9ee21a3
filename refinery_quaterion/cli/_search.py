"""``search`` and ``index``: embed records into a Qdrant index and query it."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``search`` and ``index`` to the subparsers ``sub``."""
    p = add_model_command(sub, "search", parents, data="records to search",
                          help="nearest records to a query (embedded Qdrant)",
                          description="Index DATA with the model in embedded Qdrant (in memory, or --index-path to "
                          "keep it) and print the k nearest records to each query. DATA is always read: a kept "
                          "index is rebuilt when the model or DATA changed since it was built, else reused.")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query text(s)")
    p.add_argument("-k", type=int, default=5, help="results per query (default: %(default)s)")
    p.add_argument("--label", default=None, help="only return records with this label")
    p.add_argument("--index-path", type=Path, default=None,
                   help="keep the index in this folder and reuse it while the model and DATA are unchanged")
    add_runtime_args(p)
    p.set_defaults(func=_cmd_search, on_interrupt=lambda a: "an interrupted index is rebuilt by the next run")

    p = add_model_command(sub, "index", parents, data="records to index",
                          help="upload records to a Qdrant server or folder",
                          description="Embed DATA with the model and upload it to a Qdrant server/cluster (--url) "
                          "or an embedded index folder (--path). Re-uploading the same records replaces them. An "
                          "index built with another model is refused unless --rebuild is given.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", default=None, help="Qdrant server URL, e.g. http://localhost:6333")
    target.add_argument("--path", type=Path, default=None, help="embedded Qdrant folder (new, empty, or an index)")
    p.add_argument("--api-key", default=None, help="Qdrant API key (Qdrant Cloud)")
    p.add_argument("--collection", default="refinery", help="collection name (default: %(default)s)")
    p.add_argument("--id-field", default=None, help="record field with a unique id (default: derived from the text)")
    p.add_argument("--batch-size", type=int, default=256, help="points per upload batch (default: %(default)s)")
    p.add_argument("--rebuild", action="store_true",
                   help="make the collection hold exactly DATA: empty it when it was built with another model "
                   "or from other records, and re-embed (nothing is done when it is up to date)")
    add_runtime_args(p)
    p.set_defaults(func=_cmd_index, on_interrupt=lambda a: "the collection may hold part of DATA; run the "
                   "command again (with --rebuild to start over)")


@contextlib.contextmanager
def _qdrant(location: str, *, opening: bool = False) -> Iterator[None]:
    """Turn the Qdrant client's errors (unreachable server; on ``opening``, a locked folder) into one line."""
    try:
        yield
    except RuntimeError as err:
        if not opening:
            raise
        raise CliError(one_line(err)) from err  # a local folder open in another client (the message names it)
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
    records = load_records(records_file(args.data, "DATA"))
    model = load_model(args)
    where = str(args.index_path) if args.index_path is not None else "memory"
    with _open_index(model, where, path=args.index_path, if_stale="rebuild") as index:
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
        for query in args.queries:
            print(f"\n{query}")
            for rank, hit in enumerate(index.search(query, k=args.k, filter_label=args.label), 1):
                text = model.template(hit.record)
                print(f"  {rank}. {hit.score:.3f}  [{hit.label}]  {text[:110]}")


def _cmd_index(args: argparse.Namespace) -> None:
    from refinery_quaterion.data.dataset import load_records

    model_folder(args.model)
    records = load_records(records_file(args.data, "DATA"))
    model = load_model(args)
    where = args.url or str(args.path)
    with _open_index(model, where, path=args.path, url=args.url, api_key=args.api_key, collection=args.collection,
                     id_field=args.id_field, if_stale="rebuild" if args.rebuild else "error") as index:
        with _qdrant(where):
            if not args.rebuild:
                added = index.add(records, batch_size=args.batch_size, progress=progress(args))
                print(f"indexed {added} records into {args.collection!r} at {where} ({len(index)} points)")
                return
            written = index.build(records, batch_size=args.batch_size, progress=progress(args))
            why = f" ({index.rebuilt})" if index.rebuilt else ""
            if written:
                print(f"rebuilt {args.collection!r} at {where} from {written} records{why}")
            else:
                print(f"{args.collection!r} at {where} is up to date ({len(index)} points)")
