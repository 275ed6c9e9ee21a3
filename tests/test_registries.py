"""Every family is one `refinery_quaterion.registry.Registry`: a run-time registration (one function
plus one registration, no other edit) reaches the command line's ``--help`` and the docs tables."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from refinery_quaterion.cli import build_parser
from refinery_quaterion.cli._reference import FAMILIES, family, family_markdown
from refinery_quaterion.data.readers import READERS, register_reader
from refinery_quaterion.evaluate.registry import METRICS, register_metric
from refinery_quaterion.exporters.formats import EXPORT_FORMATS, register_format
from refinery_quaterion.model.components import HEADS, LOSSES
from refinery_quaterion.registry import Registry, markdown_table


def _command_help(command: str) -> str:
    """The ``--help`` text of ``command``, from the CLI's own parser (built now, in-process)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices[command].format_help().split())


def _register_dummy_loss() -> None:
    @LOSSES.register("dummy_loss", "A dummy loss for the registry test.", options={"margin": 0.1})
    def _dummy_loss(embedding_size: int, num_groups: int | None, margin: float) -> Any:
        return None


def _register_dummy_head() -> None:
    @HEADS.register("dummy_head", "A dummy head for the registry test.")
    def _dummy_head(input_size: int) -> Any:
        return None


def _register_dummy_metric() -> None:
    register_metric("Dummy@k", lambda block, k: block.hits[:, k - 1] * 0.0, k_values="ks",
                    description="a dummy metric for the registry test")


def _register_dummy_format() -> None:
    @register_format("dummy-format", description="a dummy export format for the registry test")
    def _write_dummy(source: Any, folder: Any, settings: Any) -> dict[str, float]:
        return {}


def _register_dummy_reader() -> None:
    @register_reader(".dummy", description="a dummy input format for the registry test")
    def _read_dummy(file: Any) -> list[dict[str, Any]]:
        return [{"text": file.data.decode()}]


CASES = [
    # (registry, register, name, command whose --help lists it, family of the docs table)
    (LOSSES, _register_dummy_loss, "dummy_loss", "train", "losses"),
    (HEADS, _register_dummy_head, "dummy_head", "train", "heads"),
    (METRICS, _register_dummy_metric, "Dummy@k", "evaluate", "metrics"),
    (EXPORT_FORMATS, _register_dummy_format, "dummy-format", "export", "export-formats"),
    (READERS, _register_dummy_reader, ".dummy", "prepare", "input-formats"),
]


@pytest.mark.parametrize(("registry", "register", "name", "command", "family_name"), CASES,
                         ids=[case[2] for case in CASES])
def test_a_registration_reaches_the_help_and_the_docs(registry: Registry[Any], register: Any, name: str,
                                                      command: str, family_name: str) -> None:
    before = list(registry)
    assert name not in _command_help(command) and name not in family_markdown(family_name)
    with registry.restoring():
        register()
        assert list(registry) == [*before, name]
        assert name in _command_help(command)
        assert f"`{name}`" in family_markdown(family_name)
        assert registry[name].description.rstrip(".") in _command_help(command) or command == "prepare"
    assert list(registry) == before and name not in _command_help(command)


def test_the_choices_of_the_cli_are_the_registries() -> None:
    with LOSSES.restoring(), EXPORT_FORMATS.restoring():
        _register_dummy_loss()
        _register_dummy_format()
        args = build_parser().parse_args(["train", "data", "--out", "o", "--loss", "dummy_loss"])
        assert args.loss == "dummy_loss"
        args = build_parser().parse_args(["export", "model", "out", "--format", "dummy-format"])
        assert args.format == "dummy-format"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "data", "--out", "o", "--loss", "dummy_loss"])


def test_a_new_input_format_is_read(tmp_path: Any) -> None:
    from refinery_quaterion.data.readers import load_records

    path = tmp_path / "records.dummy"
    path.write_text("hello", encoding="utf-8")
    with READERS.restoring():
        _register_dummy_reader()
        assert load_records(path).to_dict("records") == [{"text": "hello"}]
    with pytest.raises(ValueError, match=r"unsupported file type '\.dummy'"):
        load_records(path)


def test_registry_basics() -> None:
    registry: Registry[Any] = Registry("loss", "losses", LOSSES._make_entry, default="a", usage="use({name})")
    registry.register("a", "First one.")(lambda: None)
    registry.register("b", "Second | one.", example="b()")(lambda: None)
    assert registry.choices == ["a", "b"] and registry.check("b") == "b" and registry["a"].example == "use(a)"
    assert registry.help_text() == "a (default): First one; b: Second | one"
    with pytest.raises(ValueError, match=r"unknown loss 'c'; valid losses: \['a', 'b'\]"):
        registry.check("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", "Again.")
    with pytest.raises(ValueError, match="one-line description"):
        registry.register("c", " ")
    table = markdown_table(registry)
    assert table.splitlines()[0] == "| Loss | Description | Example |"
    assert "| `a` (default) | First one. | `use(a)` |" in table and "Second \\| one." in table
    assert registry.unregister("b").name == "b" and list(registry) == ["a"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_has_a_docs_table(name: str) -> None:
    table = family_markdown(name)
    assert all(f"`{entry}`" in table for entry in family(name))
    assert len(table.splitlines()) == 2 + len(family(name))
