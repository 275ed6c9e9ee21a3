"""Model export (sentence-transformers folder, ONNX, int8) on tiny random models: same vectors as
``load(path).encode``, the documented serving script without torch, clear refusals."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASS_WORDS, NOISE_WORDS, SPECIAL_TOKENS, cosines, make_texts

import refinery_quaterion
from refinery_quaterion import DistilBertSimilarityModel, ModelConfig, RefineryExportDataset, load, save
from refinery_quaterion.exporters import EXPORT_FORMATS, ModelExportError, OnnxEmbedder, export_model

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="needs the onnx extra (onnxruntime)")
needs_st = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                              reason="needs sentence-transformers")

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "use-elsewhere.md"

# name -> (head, head_options, model options); together they cover every head of the registry.
CASES: dict[str, tuple[str, dict, dict]] = {
    "skip_connection": ("skip_connection", {}, {}),
    "skip_connection-3": ("skip_connection", {"n_layers": 3}, {}),
    "linear": ("linear", {"output_size": 16}, {}),
    "gated": ("gated", {}, {}),
    "empty": ("empty", {}, {"trainable_encoder": True}),
    "widening": ("widening", {"expansion_factor": 2.0, "activation_fn": "gelu"}, {}),
    "stacked": ("stacked", {"output_sizes": [24, 16], "activation_fn": "tanh"}, {}),
    "bert-cls-unnormalised": ("linear", {}, {"pooling": "cls", "normalize": False}),
}


def texts() -> list[str]:
    long = " ".join(["market news from the league and the lab"] * 40)  # past max_length: truncated
    return [*make_texts(24, seed=3)["text"], "goal", long, "unknownword, UNKNOWN words only"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32): token type ids, another tokenizer class."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(NOISE_WORDS) | {".", ",", "##s"})
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + words)}
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab=vocab, model_max_length=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_bert_dir: Path):
    """``get(case) -> folder`` of a saved model with that head, random (non-identity) head weights."""
    made: dict[str, Path] = {}
    frame = make_texts(40)
    label_map = RefineryExportDataset(frame, template="{text}").label_map

    def get(case: str) -> Path:
        if case not in made:
            head, head_options, options = CASES[case]
            pretrained = tiny_bert_dir if case.startswith("bert") else tiny_model_dir
            model = DistilBertSimilarityModel(ModelConfig(pretrained=pretrained, template="{text}", head=head,
                                                          head_options=head_options, loss="triplet", **options))
            generator = torch.Generator().manual_seed(len(made))
            with torch.no_grad():
                for weights in model.model.head.parameters():
                    weights.copy_(torch.randn(weights.shape, generator=generator) * 0.5)
            folder = tmp_path_factory.mktemp(f"model-{case}") / "model"
            save(model, folder, label_map=label_map, extra={"train_records": 30, "val_records": 10})
            made[case] = folder
        return made[case]

    return get


def test_every_head_of_the_registry_is_covered() -> None:
    assert set(refinery_quaterion.HEADS) <= {head for head, _, _ in CASES.values()}


@pytest.mark.parametrize("case", list(CASES))
@needs_st
@needs_onnx
def test_exports_give_the_vectors_of_load_encode(case: str, saved_models, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = saved_models(case)
    expected = load(path).encode(texts())
    st = export_model(path, tmp_path / "st", check=False)
    onnx = export_model(path, tmp_path / "onnx", format="onnx", check=False)
    assert st.dim == onnx.dim == expected.shape[1]

    st_vectors = SentenceTransformer(str(st.path), device="cpu").encode(texts())
    onnx_vectors = OnnxEmbedder(onnx.path).encode(texts(), batch_size=5)
    assert cosines(st_vectors, expected).min() >= 0.9999
    assert cosines(onnx_vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((st.path / "modules.json").read_text())]
    dense = [m for m in modules if m == "Dense"]
    assert modules[:2] == ["Transformer", "Pooling"] and modules[-1] == "Normalize"
    head, options, _ = CASES[case]
    assert len(dense) == {"empty": 0, "widening": 2, "stacked": 2}.get(head, 1)  # affine heads: one Dense


@needs_onnx
def test_int8_export_is_close_to_fp32(saved_models, tmp_path: Path) -> None:
    result = export_model(saved_models("skip_connection"), tmp_path / "onnx", format="onnx", quantize="int8")
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json"} <= set(result.files)
    assert result.checks["min_cosine"] >= 0.9999 and result.checks["int8_min_cosine"] > 0.9
    fp32 = OnnxEmbedder(result.path).encode(texts())
    int8 = OnnxEmbedder(result.path, "model_int8.onnx").encode(texts())
    assert cosines(int8, fp32).min() > 0.9
    assert "int8_min_cosine" in str(result) and "model_int8.onnx" in (result.path / "README.md").read_text()


BLOCKER = textwrap.dedent("""
    import importlib.abc, runpy, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    try:
        __import__(min(BLOCKED))
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the import blocker does not work")
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    leaked = BLOCKED & {name.partition(".")[0] for name in sys.modules}
    assert not leaked, leaked
""")


def run_blocked(blocked: list[str], script: Path, *args: str, stdin: str = "") -> np.ndarray:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(blocked), str(script), *args],
                          input=stdin.encode(), capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return np.load(io.BytesIO(done.stdout))


def doc_block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert match, f"no python block after <!-- {marker} --> in {GUIDE}"
    return match.group(1)


@needs_onnx
def test_documented_onnx_script_serves_without_torch(saved_models, tmp_path: Path) -> None:
    script_text = doc_block("serve-onnx")
    assert len(script_text.splitlines()) <= 25
    script = tmp_path / "serve_onnx.py"
    script.write_text(script_text)
    path = saved_models("stacked")
    folder = export_model(path, tmp_path / "onnx", format="onnx", quantize="int8").path
    expected = load(path).encode(texts())
    blocked = ["torch", "transformers", "refinery_quaterion", "quaterion", "quaterion_models"]
    vectors = run_blocked(blocked, script, str(folder), stdin="\n".join(texts()) + "\n")
    assert vectors.shape == expected.shape and cosines(vectors, expected).min() >= 0.9999
    int8 = run_blocked(blocked, script, str(folder), "model_int8.onnx", stdin="\n".join(texts()) + "\n")
    assert cosines(int8, vectors).min() > 0.9


@pytest.mark.slow
@needs_st
def test_sentence_transformers_folder_loads_without_this_library(saved_models, tmp_path: Path) -> None:
    path = saved_models("skip_connection")
    folder = export_model(path, tmp_path / "st").path
    script = tmp_path / "use_st.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        from sentence_transformers import SentenceTransformer
        texts = [line.rstrip("\\n") for line in sys.stdin]
        np.save(sys.stdout.buffer, SentenceTransformer(sys.argv[1], device="cpu").encode(texts))
    """))
    vectors = run_blocked(["refinery_quaterion", "quaterion", "quaterion_models", "pytorch_lightning"], script,
                          str(folder), stdin="\n".join(texts()) + "\n")
    assert cosines(vectors, load(path).encode(texts())).min() >= 0.9999


@needs_st
def test_documented_sentence_transformers_and_qdrant_examples_run(saved_models, tmp_path: Path, monkeypatch,
                                                                  capsys) -> None:
    pytest.importorskip("qdrant_client")
    export_model(saved_models("skip_connection"), tmp_path / "models" / "ag-news-st")
    monkeypatch.chdir(tmp_path)
    guide = GUIDE.read_text(encoding="utf-8")
    for section in ("sentence-transformers", "Qdrant"):
        block = re.search(rf"## {section}\n.*?```python\n(.*?)```", guide, re.S).group(1)
        exec(compile(block, f"{GUIDE}#{section}", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("(1, 32) tensor([[1.0000]])")
    assert len(lines) == 3 and all(re.match(r"-?\d\.\d{3}  \w", line) for line in lines[1:])


@needs_st
def test_folder_contents_and_model_card(saved_models, tmp_path: Path) -> None:
    import pandas as pd

    evaluation = pd.DataFrame({"P@10": [0.5, 0.75]}, index=pd.Index(["raw", "fine-tuned"], name="model"))
    result = export_model(saved_models("linear"), tmp_path / "st", evaluation=evaluation)
    folder = result.path
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert config["similarity_fn_name"] == "cosine"
    assert json.loads((folder / "label_map.json").read_text()) == {"labels": ["business", "science", "sports", "world"]}
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["padding"]["strategy"] == "BatchLongest" and tokenizer["truncation"]["max_length"] == 128
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 128
    card = (folder / "README.md").read_text()
    for expected in ("library_name: sentence-transformers", "{text}", "`sports`", "| training records | 30 |",
                     "| head | linear |", "## Evaluation", "0.7500", "tiny-distilbert"):
        assert expected in card, expected
    assert "min_cosine" in result.checks and result.checks["min_cosine"] >= 0.9999


@needs_onnx
def test_export_of_a_model_in_memory(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", head="gated", loss="triplet"))
    result = export_model(model, tmp_path / "onnx", format="onnx", label_map=["a", "b"])
    assert result.checks["min_cosine"] >= 0.9999
    assert json.loads((result.path / "label_map.json").read_text()) == {"labels": ["a", "b"]}
    vectors = OnnxEmbedder(result.path).encode(texts())
    assert cosines(vectors, model.encode(texts())).min() >= 0.9999


@needs_onnx
def test_a_head_that_cannot_be_expressed_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    softmax = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", head="stacked", loss="triplet", head_options={"output_sizes": [16, 16], "activation_fn": "softmax"}))
    for fmt in EXPORT_FORMATS:
        with pytest.raises(ModelExportError, match=r"head 'stacked' \(StackedProjectionHead\).*'softmax'"):
            export_model(softmax, tmp_path / fmt, format=fmt)
        assert not (tmp_path / fmt).exists()

    class TwistedHead(torch.nn.Module):
        input_embedding_size = output_size = 32

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x

    model = DistilBertSimilarityModel(ModelConfig(pretrained=tiny_model_dir, template="{text}", head="gated", loss="triplet"))
    model.model.head = TwistedHead()
    with pytest.raises(ModelExportError, match=r"TwistedHead\) cannot be exported.*exportable head classes"):
        export_model(model, tmp_path / "twisted")


def test_existing_output_is_refused_unless_overwrite(saved_models, tmp_path: Path) -> None:
    path = saved_models("gated")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(path, out)
    assert (out / "keep.txt").read_text() == "mine"
    export_model(path, out, overwrite=True, check=False)
    assert (out / "modules.json").is_file() and not (out / "keep.txt").exists()
    with pytest.raises(ValueError, match="model folder"):
        export_model(path, path, overwrite=True)
    with pytest.raises(ValueError, match="model folder"):
        export_model(path, path.parent, overwrite=True)
    assert (path / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"format": "tflite"}, r"unknown export format 'tflite'; valid formats: \["),
    ({"quantize": "int8"}, r"quantize='int8' is not available for format 'sentence-transformers'"),
    ({"format": "onnx", "quantize": "int4"}, r"quantize='int4' is not available for format 'onnx'.*'int8'"),
    ({"format": "onnx", "opset": 9}, r"opset must be an integer from 14 to 21, got 9"),
])
def test_bad_settings_are_refused_clearly(kwargs: dict, message: str, saved_models, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        export_model(saved_models("gated"), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_missing_onnx_names_the_extra(saved_models, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=re.escape("refinery-quaterion[onnx]")):
        export_model(saved_models("gated"), tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("umask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_files_follow_the_umask(umask: int, folder_mode: int, file_mode: int, saved_models, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        folder = export_model(saved_models("gated"), tmp_path / "st", check=False).path
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == folder_mode
    items = list(folder.rglob("*"))
    assert any(p.name == "model.safetensors" for p in items)
    for item in items:
        assert stat.S_IMODE(item.stat().st_mode) == (folder_mode if item.is_dir() else file_mode), item


def test_sentence_transformers_folder_loads_in_2_2_2(saved_models, tmp_path: Path) -> None:
    """The layout sentence-transformers 2.2.2 (refinery's embedder) reads; tools/refinery_stack.py loads it for real."""
    from safetensors.numpy import load_file

    folder = export_model(saved_models("stacked"), tmp_path / "st", check=False).path
    modules = json.loads((folder / "modules.json").read_text())
    assert all(m["type"].startswith("sentence_transformers.models.") and set(m) == {"idx", "name", "path", "type"}
               for m in modules)
    assert modules[-1]["type"].endswith("Normalize")
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert set(pooling) <= {"word_embedding_dimension", "pooling_mode_cls_token", "pooling_mode_mean_tokens",
                            "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"}  # 2.2.2's signature
    assert set(json.loads((folder / "sentence_bert_config.json").read_text())) == {"max_seq_length", "do_lower_case"}
    version = json.loads((folder / "config_sentence_transformers.json").read_text())["__version__"]
    assert version["sentence_transformers"] == "2.2.2"
    for module in modules:
        path = folder / module["path"]
        if module["type"].endswith("Dense"):
            config = json.loads((path / "config.json").read_text())
            assert set(config) == {"in_features", "out_features", "bias", "activation_function"}
            assert config["activation_function"].startswith("torch.nn.modules.")
            binary = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
            safetensors = load_file(str(path / "model.safetensors"))
            assert set(binary) == set(safetensors) == {"linear.weight", "linear.bias"}
            for name, tensor in binary.items():
                np.testing.assert_array_equal(tensor.numpy(), safetensors[name])
        if module["type"].endswith("Normalize"):
            assert (path / "config.json").is_file()  # a folder that git and the Hub keep
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 128


def test_model_card_follows_the_hub_conventions(saved_models, tmp_path: Path) -> None:
    import dataclasses

    import yaml

    from refinery_quaterion.exporters.model_card import front_matter
    from refinery_quaterion.exporters.source import read_model

    for fmt in ("sentence-transformers", "onnx"):
        folder = export_model(saved_models("linear"), tmp_path / fmt, format=fmt, check=False).path
        card = (folder / "README.md").read_text()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert meta["library_name"] == ("sentence-transformers" if fmt != "onnx" else "onnx")
        assert meta["pipeline_tag"] == "sentence-similarity"
        assert {"sentence-transformers", "sentence-similarity", "feature-extraction"} <= set(meta["tags"])
        assert "base_model" not in meta and "license" not in meta  # a local base model: not a Hub id
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", card.split("## Files")[1], re.M)
        assert sorted(name for name, _ in rows) == sorted(files)  # every file it ships, and only those
        assert all(role != "-" for _, role in rows), rows
    assert "TextEmbedding.add_custom_model" in card and "dim=16" in card  # the ONNX card shows FastEmbed

    source = read_model(saved_models("linear"))
    meta = yaml.safe_load("\n".join(front_matter(dataclasses.replace(source, base_model="minilm"),
                                                 format="sentence-transformers")[1:-1]))
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    extra = {"extra": {"license": "cc-by-4.0", "datasets": ["PolyAI/banking77"], "language": "en"}}
    meta = yaml.safe_load("\n".join(front_matter(dataclasses.replace(source, base_model="minilm", config=extra),
                                                 format="sentence-transformers")[1:-1]))
    assert meta["license"] == "cc-by-4.0" and meta["datasets"] == ["PolyAI/banking77"] and meta["language"] == ["en"]


def test_an_export_inside_the_model_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """`export_model("m", "m/export", overwrite=True)` would write into (and could replace) the model."""
    from refinery_quaterion.errors import SettingError
    from refinery_quaterion.exporters import export_model

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = sorted(p.name for p in model.iterdir())
    for out in (model / "export", model, tmp_path):
        with pytest.raises(SettingError, match="the model folder"):
            export_model(model, out, overwrite=True)
    assert sorted(p.name for p in model.iterdir()) == before
