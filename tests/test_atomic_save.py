"""Fault injection: SIGKILL a writer at many points of an overwrite; the target is always whole.

A child process overwrites a fake "model" folder with `atomic_dir` and kills itself with
SIGKILL at a chosen step (through `_io._FAULT_HOOK`, so the points are exact and nothing
depends on timing). After every kill the folder must hold exactly the old or the new version,
each file checked against the version's manifest of SHA-256 sums, and leftovers of the kill
must be gone once the next save has passed its cleanup. The children load ``_io.py`` by file
path, so they start in milliseconds (no torch import). One more test kills the real
`refinery_quaterion.save` of a tiny model (in forked children) and checks `load`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import exchange_supported

from refinery_quaterion import ModelConfig, _io

IO_FILE = Path(_io.__file__)
KEY_LABELS = ("dir:created", "write:chunk", "file:written", "file:replaced", "dir:written", "dir:synced",
              "dir:exchanged", "remove:file", "dir:done")

CHILD = r"""
import hashlib, importlib.util, json, os, signal, sys

io_file, target, version, mode, n, log = sys.argv[1:7]
n = int(n)
spec = importlib.util.spec_from_file_location("rq_io_under_test", io_file)
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
if os.environ.get("RQ_TEST_NO_EXCHANGE"):
    io._exchange = lambda a, b: False
labels, counts = [], {"pre": 0, "post": 0}
started = False

def hook(label):
    global started
    started = started or label == "dir:created"
    phase = "post" if started else "pre"
    counts[phase] += 1
    labels.append(label)
    if phase == mode and counts[phase] == n:
        with open(log, "a") as handle:
            handle.write(label + "\n")
        os.kill(os.getpid(), signal.SIGKILL)

def write_model(folder, version):
    sums = {}
    def put(rel, data):
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            for start in range(0, len(data), 16384):
                handle.write(data[start:start + 16384])
                handle.flush()
                hook("write:chunk")
        sums[rel] = hashlib.sha256(data).hexdigest()
    put("config.json", json.dumps({"version": version}).encode())
    put("head/weights.bin", (version.encode() * 40000)[:65536])
    put("encoders/0/tokenizer.json", json.dumps({"version": version, "vocab": list(range(500))}).encode())
    text = json.dumps({"version": version, "labels": ["a", "b"]})
    io.atomic_write_text(os.path.join(folder, "label_map.json"), text)
    sums["label_map.json"] = hashlib.sha256(text.encode()).hexdigest()
    io.atomic_write_text(os.path.join(folder, "manifest.json"), json.dumps({"version": version, "sha256": sums}))

io._FAULT_HOOK = hook
with io.atomic_dir(target, overwrite=True) as tmp:
    write_model(tmp, version)
print(json.dumps(labels))
"""


def read_model(folder: Path) -> str:
    """The version a fake model folder holds; AssertionError unless it is complete and consistent."""
    assert folder.is_dir() and not folder.is_symlink(), f"{folder} is not a folder"
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == set(manifest["sha256"]) | {"manifest.json"}, files
    for rel, digest in manifest["sha256"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest, rel
    assert json.loads((folder / "config.json").read_text())["version"] == manifest["version"]
    return manifest["version"]


def leftovers(parent: Path, name: str) -> set[str]:
    names = {p.name for p in parent.iterdir()} - {name}
    assert all(_io._OURS.match(n) for n in names), f"unexpected entries: {names}"
    return names


def run_child(target: Path, version: str, mode: str, n: int, log: Path, *, exchange: bool = True
              ) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if not exchange:
        env["RQ_TEST_NO_EXCHANGE"] = "1"
    return subprocess.run([sys.executable, "-S", "-c", CHILD, str(IO_FILE), str(target), version, mode, str(n),
                           str(log)], capture_output=True, text=True, env=env, timeout=60)


def kill_points(labels: list[str], keys: tuple[str, ...], total: int, seed: int) -> list[tuple[str, int]]:
    """``total`` kill points: the first step of each key label, two kills during the cleanup of
    the previous kill's leftovers, and seeded random steps for the rest (in random order)."""
    rng = random.Random(seed)
    must = sorted({labels.index(label) + 1 for label in keys})
    rest = [i for i in range(1, len(labels) + 1) if i not in must]
    points = [("post", i) for i in must + rng.sample(rest, max(0, total - 2 - len(must)))] + [("pre", 1), ("pre", 2)]
    rng.shuffle(points)
    return points


@pytest.mark.parametrize(("exchange", "total"), [(True, 20), (False, 14)], ids=["exchange", "two-renames"])
def test_sigkill_during_overwrite_leaves_the_old_or_the_new_folder(tmp_path: Path, exchange: bool,
                                                                    total: int) -> None:
    started = time.perf_counter()
    if exchange and not exchange_supported(tmp_path):
        pytest.skip("this file system has no atomic exchange (renameat2 RENAME_EXCHANGE)")
    parent, log = tmp_path / "models", tmp_path / "kills.log"
    target = parent / "model"
    dry = tmp_path / "dry" / "model"  # the steps of an overwrite, from a save that is not killed
    for version in ("v0", "v1"):
        done = run_child(dry, version, "none", 0, log, exchange=exchange)
        assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)
    assert read_model(dry) == "v1" and leftovers(dry.parent, "model") == set()
    keys = KEY_LABELS if exchange else tuple(k for k in KEY_LABELS if k != "dir:exchanged") + ("dir:moved-old", "dir:renamed")
    assert set(keys) <= set(labels), set(keys) - set(labels)
    done = run_child(target, "v0", "none", 0, log, exchange=exchange)
    assert done.returncode == 0 and read_model(target) == "v0", done.stderr

    current, outcomes = "v0", []
    for i, (mode, n) in enumerate(kill_points(labels, keys, total, seed=11 + exchange), start=1):
        before = leftovers(parent, "model")
        new = f"v{i}"
        done = run_child(target, new, mode, n, log, exchange=exchange)
        killed = done.returncode == -signal.SIGKILL
        assert killed or done.returncode == 0, done.stderr
        after = leftovers(parent, "model")
        if mode == "post" and killed:
            assert not (before & after), f"leftovers of the previous kill survived a save: {before & after}"
        if target.exists():
            version = read_model(target)
        else:  # only the two-rename fallback, killed between its renames; the next save repairs it
            assert not exchange and len([n for n in after if n.endswith(".old")]) == 1, after
            version = "missing"
        assert version in {current, new, "missing"}, (mode, n, version)
        outcomes.append(version == new)
        if version != "missing":
            current = version

    done = run_child(target, "final", "none", 0, log, exchange=exchange)
    assert done.returncode == 0, done.stderr
    assert read_model(target) == "final" and leftovers(parent, "model") == set()
    killed_at = log.read_text().split()
    assert len(killed_at) >= total - 2  # the cleanup kills find nothing to clean after a clean finish
    assert set(keys) <= set(killed_at), set(keys) - set(killed_at)
    assert any(outcomes) and not all(outcomes)  # both the old and the new version were seen
    assert time.perf_counter() - started < 30


# --------------------------------------------------------------------------------------
# the real save / load
# --------------------------------------------------------------------------------------


def kill_in_fork(action, label: str, occurrence: int = 1) -> int:
    """Run ``action()`` in a forked child that SIGKILLs itself at the ``occurrence``-th ``label``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            seen = [0]

            def hook(step: str) -> None:
                if step == label:
                    seen[0] += 1
                    if seen[0] == occurrence:
                        os.kill(os.getpid(), signal.SIGKILL)

            _io._FAULT_HOOK = hook
            action()
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung")
        time.sleep(0.01)


def test_sigkill_during_a_real_save_leaves_a_loadable_old_or_new_model(tiny_model_dir: Path, synthetic_split,
                                                                       tmp_path: Path) -> None:
    import torch

    from refinery_quaterion.model.trainable import DistilBertSimilarityModel
    from refinery_quaterion.training.model_files import load, save

    label_map = synthetic_split[0].label_map
    models = {version: DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, num_groups=len(label_map))) for version in ("old", "new")}
    with torch.no_grad():
        for parameter in models["new"].model.head.parameters():
            parameter.add_(0.5)  # two models that differ in every head weight
    heads = {v: {k: t.clone() for k, t in m.model.head.state_dict().items()} for v, m in models.items()}
    target = tmp_path / "model"
    save(models["old"], target, label_map=label_map, extra={"version": "old"})

    def loaded_version() -> str:
        model = load(target)
        version = model.config["extra"]["version"]
        for key, value in model.model.head.state_dict().items():
            assert torch.equal(value, heads[version][key]), key
        assert model.label_map == label_map
        return version

    swap = "dir:exchanged" if exchange_supported(tmp_path) else "dir:renamed"
    seen = []
    for label, occurrence in [("dir:created", 1), ("file:replaced", 1), ("dir:synced", 1), (swap, 1),
                              ("remove:file", 2)]:
        code = kill_in_fork(lambda: save(models["new"], target, label_map=label_map, overwrite=True,
                                         extra={"version": "new"}), label, occurrence)
        assert code == -signal.SIGKILL, f"the save was not killed at {label}"
        seen.append(loaded_version())
    assert seen == ["old", "old", "old", "new", "new"]
    saved_umask = os.umask(0o022)
    try:
        save(models["old"], target, label_map=label_map, overwrite=True, extra={"version": "old"})
    finally:
        os.umask(saved_umask)
    assert loaded_version() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    modes = {p.relative_to(target).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [target, *target.rglob("*")]}
    assert {m for p, m in modes.items() if (target / p).is_dir()} == {0o755}, modes  # readable by other users
    assert {m for p, m in modes.items() if (target / p).is_file()} == {0o644}, modes
