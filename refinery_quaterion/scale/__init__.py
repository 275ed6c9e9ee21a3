"""Stage 7, scale: encode and index big corpora on Ray (a local Ray, or a cluster).

* `refinery_quaterion.scale.ray_index`: `index_with_ray` (records -> ONNX or OpenVINO encoder actors ->
  a Qdrant server, or Parquet shards of ``(id, vector, payload)``), `RayIndexResult`;
* `refinery_quaterion.scale.config`: `RayIndexConfig`, its settings;
* `refinery_quaterion.scale.session`: importing Ray, joining or starting it, reading record files;
* `refinery_quaterion.scale.qdrant`: the collection on the server, its deferred indexing.

Needs the ``refinery-quaterion[scale]`` extra (Ray Data and pyarrow); the names below are
imported on first use, so importing this package imports no Ray.

Example:
    ```python
    from refinery_quaterion.scale import RayIndexConfig, index_with_ray

    print(index_with_ray("my-model", "corpus/", out="corpus-vectors",
                         config=RayIndexConfig(workers=2, quantize="int8")))
    ```
"""

from __future__ import annotations

from refinery_quaterion._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "config": ("RayIndexConfig",),
    "ray_index": ("RayIndexResult", "index_with_ray"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
