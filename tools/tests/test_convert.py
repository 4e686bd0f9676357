"""tools.convert: DCP checkpoint -> Hugging Face directory -> transformers, and back."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]

from llm_model import ModelConfig, Transformer  # noqa: E402
from llm_model.generation import generate  # noqa: E402
from llm_model.hf import HFExportWarning, import_hf  # noqa: E402
from llm_train.checkpoint import save_checkpoint  # noqa: E402
from tools.convert import dcp_to_hf, hf_to_dcp  # noqa: E402
from tools.convert.__main__ import main  # noqa: E402

transformers = pytest.importorskip("transformers", reason="transformers (dev dependency) missing")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed")

EOS = "<|endoftext|>"


def small_config(**kw) -> ModelConfig:
    base = dict(
        d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=320, max_seq_len=64,
        ffn_hidden=96, rope_theta=500000.0, norm_eps=1e-5, kernels=False,
    )  # fmt: skip
    return ModelConfig(**{**base, **kw})


def write_tokenizer(path: Path) -> None:
    """A small byte-level BPE tokenizer whose EOS is id 0 (as llm_tokenize trains them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator(["the cat sat on the mat", "to be or not to be"] * 20, trainer)
    tok.save(str(path))


def make_run(tmp_path: Path, model: Transformer, step: int = 3) -> Path:
    """A run directory as `pretrain` leaves it: config.yaml, tokenizer.json, checkpoints/ (whose
    manifest records the model config)."""
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": dataclasses.asdict(model.config), "tokenizer": {"eos_token": EOS}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    write_tokenizer(run / "tokenizer.json")
    optimizer = torch.optim.AdamW(model.parameters())
    manifest = {"tokens": 0, "model_config": dataclasses.asdict(model.config)}
    save_checkpoint(run / "checkpoints", step, model, optimizer, manifest=manifest, rank_state={})
    return run


def random_model(config: ModelConfig) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(config).eval()
    with torch.no_grad():  # non-trivial norm weights so a name mix-up would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def load_hf(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


@pytest.mark.parametrize("tied", [False, True])
def test_dcp_to_hf_logits_equal_in_transformers(tmp_path, tied):
    model = random_model(small_config(tie_embeddings=tied))
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf")
    hf = load_hf(out)
    ids = torch.randint(0, 320, (2, 33))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    back = import_hf(out, kernels=False).eval()
    assert back.config == model.config
    torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)


def test_olmo2_style_model_exports_as_olmo2(tmp_path):
    model = random_model(small_config(norm_position="sublayer", qk_norm="full", norm_eps=1e-6))
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["model_type"] == "olmo2"
    hf = load_hf(out)
    assert type(hf).__name__ == "Olmo2ForCausalLM"
    ids = torch.randint(0, 320, (2, 21))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    back = import_hf(out, kernels=False).eval()
    assert back.config == model.config
    with pytest.raises(ValueError, match=r"as llama: ModelConfig.norm_position='sublayer'"):
        dcp_to_hf(tmp_path / "run", tmp_path / "as-llama", arch="llama")


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_style_model_exports_as_gpt2(tmp_path, tied):
    config = small_config(
        position="learned", norm="layernorm", activation="gelu", bias=True, n_kv_heads=None,
        ffn_hidden=None, tie_embeddings=tied,
    )  # fmt: skip
    model = random_model(config)
    with torch.no_grad():  # non-zero biases so a fused-qkv or transpose mix-up shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf", shard_size="60KB")
    hf = load_hf(out)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.randint(0, 320, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="model_type='gpt2' does not import"):
        import_hf(out)


def test_sharded_export_has_index_and_round_trips_through_hf_to_dcp(tmp_path):
    model = random_model(small_config())
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf", shard_size="40KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all((out / f).is_file() for f in files)
    assert not (out / "model.safetensors").exists()
    for f in files:  # no file above the limit unless it holds one tensor
        names = [n for n, file in index["weight_map"].items() if file == f]
        assert (out / f).stat().st_size <= 40_000 + 1024 or len(names) == 1
    ids = torch.randint(0, 320, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(out)(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    # sharded HF -> our DCP checkpoint -> HF again: the same tensors, bit for bit
    ckpt = hf_to_dcp(out, tmp_path / "imported" / "step_000000")
    again = dcp_to_hf(ckpt, tmp_path / "hf2")
    from safetensors.torch import load_file

    first = {k: v for f in files for k, v in load_file(out / f).items()}
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def bigram_model(config: ModelConfig, chain: list[int]) -> Transformer:
    """Blocks that add nothing and an output head that maps chain[i] to chain[i + 1]."""
    model = random_model(config)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.wo.weight.zero_()
            block.ffn.w2.weight.zero_()
        model.norm.weight.fill_(1.0)
        model.output.weight.zero_()
        for cur, nxt in zip(chain, chain[1:], strict=False):
            h = model.norm(model.tok_emb.weight[cur])
            model.output.weight[nxt] = 10 * h / h.norm()
    return model


def test_export_carries_tokenizer_and_generate_stops_on_our_eos(tmp_path):
    eos_id = 0
    model = bigram_model(small_config(), [10, 11, 12, eos_id])
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert (config["eos_token_id"], config["bos_token_id"]) == (eos_id, eos_id)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == EOS and tok.eos_token_id == eos_id
    ours = tokenizers.Tokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))
    ids = ours.encode("the cat sat").ids
    assert tok("the cat sat")["input_ids"] == [eos_id, *ids]  # EOS first, as in training
    assert tok("the cat sat", add_special_tokens=False)["input_ids"] == ids
    hf = load_hf(out)
    got = hf.generate(torch.tensor([[10]]), max_new_tokens=8, do_sample=False)
    assert got.tolist() == [[10, 11, 12, eos_id]]  # stopped at our EOS, not id 2
    assert generate(model, [[10]], 8, eos_id=eos_id) == [[11, 12, eos_id]]


def test_document_masking_warns_and_strict_refuses(tmp_path):
    """Warned, not refused: on one document (a prompt without EOS inside) the exported model
    computes exactly what was trained; only packed inputs with EOS inside differ."""
    model = random_model(small_config(doc_mask_eos_id=0))
    run = make_run(tmp_path, model)
    with pytest.raises(ValueError, match="doc_mask_eos_id=0"):
        dcp_to_hf(run, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()
    with pytest.warns(HFExportWarning, match="doc_mask_eos_id=0.*document masking"):
        out = dcp_to_hf(run, tmp_path / "hf")
    hf = load_hf(out)
    single = torch.randint(1, 320, (1, 16))
    packed = single.clone()
    packed[0, 6] = 0  # a document boundary inside
    with torch.no_grad():
        torch.testing.assert_close(hf(single).logits, model(single), atol=1e-5, rtol=1e-5)
        diff = (hf(packed).logits - model(packed)).abs()
    assert diff[0, :7].max() < 1e-4 and diff[0, 7:].max() > 1e-2  # after the EOS they differ


def test_incompatible_config_names_every_field(tmp_path):
    config = small_config(position="alibi", qk_norm="full", activation="gelu", ffn_hidden=None)
    run = make_run(tmp_path, Transformer(config))
    with pytest.raises(ValueError) as err:
        dcp_to_hf(run, tmp_path / "hf")
    for arch in ("llama", "olmo2"):  # per architecture tried, every field it cannot express
        found = str(err.value).split(f"as {arch}: ")[1].split(" | ")[0]
        for field in ("position='alibi'", "activation='gelu'"):
            assert f"ModelConfig.{field} ({arch} needs" in found
    assert "ModelConfig.qk_norm='full' (llama needs 'none')" in str(err.value)
    assert not (tmp_path / "hf").exists()


def test_cli_converts_a_step_and_reports_errors(tmp_path, capsys):
    run = make_run(tmp_path, random_model(small_config()), step=5)
    argv = ["dcp-to-hf", str(run), str(tmp_path / "hf"), "--step", "5", "--dtype", "bfloat16"]
    assert main(argv) == 0
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "hf" / "model.safetensors")
    model = random_model(small_config())
    assert torch.equal(
        weights["model.embed_tokens.weight"], model.tok_emb.weight.detach().to(torch.bfloat16)
    )
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"
    assert main(["dcp-to-hf", str(run), str(tmp_path / "x"), "--step", "7"]) == 1
    assert "step_000007" in capsys.readouterr().err
    assert main(["dcp-to-hf", str(run), str(tmp_path / "y"), "--eos-token", "<eos>"]) == 1
    assert "eos token '<eos>' is not in the vocabulary" in capsys.readouterr().err


def test_corrupt_checkpoint_is_refused(tmp_path):
    run = make_run(tmp_path, random_model(small_config()))
    shard = next((run / "checkpoints" / "step_000003").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        dcp_to_hf(run / "checkpoints" / "step_000003", tmp_path / "hf")
    with warnings.catch_warnings():  # the run directory: no valid checkpoint left
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match="no valid checkpoint"):
            dcp_to_hf(run, tmp_path / "hf")


class _Marker:
    """Unpickles to ``os.system("touch <marker>")``: a harmless stand-in for an attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_crafted_metadata_is_refused_and_runs_nothing(tmp_path, capsys):
    """A shipped checkpoint whose ``.metadata`` pickle calls a function (its manifest re-hashed,
    as whoever ships one would): refused by dcp_to_hf and the CLI, and nothing runs."""
    import pickle

    from llm_formats import checkpoint as formats
    from llm_train.safe_dcp import UnsafeCheckpointError, read_metadata

    run, marker = make_run(tmp_path, random_model(small_config())), tmp_path / "MARKER"
    ckpt = run / "checkpoints" / "step_000003"
    metadata = read_metadata(ckpt)
    metadata.storage_meta.modules = [_Marker(marker)]
    (ckpt / ".metadata").write_bytes(pickle.dumps(metadata))
    fields = {k: v for k, v in formats.read_manifest(ckpt).items() if k != "files"}
    formats.write_manifest(ckpt, fields, formats.hash_files(ckpt))
    refusal = r"\.metadata: refusing to load global \w+\.system"
    with pytest.raises(UnsafeCheckpointError, match=refusal):
        dcp_to_hf(run, tmp_path / "hf")
    assert main(["dcp-to-hf", str(run), str(tmp_path / "hf2")]) == 1
    assert "refusing to load global" in capsys.readouterr().err
    assert not marker.exists()


def _fsdp_rank(rank: int, init_file: Path, run: Path, config: ModelConfig) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from llm_train.parallel import apply_fsdp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = random_model(config)  # same seed on both ranks: the same full weights
        apply_fsdp(model, init_device_mesh("cpu", (2,)), param_dtype="fp32")
        optimizer = torch.optim.AdamW(model.parameters())
        manifest = {"model_config": dataclasses.asdict(config)}
        save_checkpoint(run / "checkpoints", 1, model, optimizer, manifest=manifest, rank_state={})
    finally:
        dist.destroy_process_group()


def test_fsdp_checkpoint_with_uneven_shards_converts(tmp_path):
    """Two gloo ranks write one chunk each per tensor (101 rows: 51 + 50); they are joined."""
    import torch.distributed.checkpoint  # noqa: F401  (imported before the fork, once)
    import torch.multiprocessing as mp

    config = small_config(vocab_size=101, n_layers=1)
    model = random_model(config)
    run = make_run(tmp_path, model, step=1)  # config.yaml and tokenizer.json; replaced below
    shutil.rmtree(run / "checkpoints")
    mp.start_processes(
        _fsdp_rank, args=(tmp_path / "pg", run, config), nprocs=2, start_method="fork"
    )
    from torch.distributed.checkpoint import FileSystemReader

    from tools.convert.dcp import model_tensors

    checkpoint = run / "checkpoints" / "step_000001"
    metadata = FileSystemReader(checkpoint).read_metadata().state_dict_metadata
    assert [c.sizes[0] for c in metadata["model.tok_emb.weight"].chunks] == [51, 50]
    shards = model_tensors(checkpoint)
    out = dcp_to_hf(run, tmp_path / "hf")
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(out)(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    assert torch.equal(shards["tok_emb.weight"].load(), model.tok_emb.weight)


def test_exported_tokenizer_keeps_special_token_text_as_text(tmp_path):
    """`<|endoftext|>` typed in a text is text in training (llm_tokenize), so it must be after
    export too: tokenizer_config.json carries split_special_tokens (it did not)."""
    from llm_tokenize import Tokenizer

    out = dcp_to_hf(make_run(tmp_path, random_model(small_config())), tmp_path / "hf")
    ours = Tokenizer.from_file(tmp_path / "run" / "tokenizer.json")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "the cat <|endoftext|> sat"
    assert tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert tok(text)["input_ids"] == [ours.eos_id, *ours.encode(text)]
    assert ours.eos_id not in ours.encode(text)


def _hf_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """What a Hugging Face consumer (lm-evaluation-harness's HFLM) computes with the export's
    own tokenizer: the continuation's tokens are those of ``context + continuation`` after the
    context's, and their log-probabilities are summed."""
    stripped = context.rstrip(" ")  # the harness moves trailing spaces onto the continuation
    continuation = context[len(stripped) :] + continuation
    ctx = tok(stripped)["input_ids"]
    whole = tok(stripped + continuation)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), dim=-1)
    return sum(float(logprobs[i - 1, whole[i]]) for i in range(len(ctx), len(whole)))


def test_export_scored_through_transformers_gives_llm_evals_loglikelihoods(tmp_path):
    """Every training document follows an EOS and llm-eval scores [EOS] + context; the export's
    tokenizer must prepend it, or a transformers consumer scores other numbers (up to 21.9 nats
    away on real tasks). fp32 on both sides: they agree to ~1e-6 nats; 1e-4 is the bar."""
    from llm_eval.multiple_choice import build_requests
    from llm_eval.scoring import score_requests
    from llm_eval.tasks import TaskItem
    from llm_tokenize import Tokenizer

    model = random_model(small_config())
    out = dcp_to_hf(make_run(tmp_path, model), tmp_path / "hf")
    ours = Tokenizer.from_file(tmp_path / "run" / "tokenizer.json")
    items = [
        TaskItem(task="t", id=0, contexts=("the cat sat on",) * 2, choices=(" the mat", " be"),
                 gold=0),
        TaskItem(task="t", id=1, contexts=("to be or ", "not to"), choices=("not", " be"),
                 gold=1),
    ]  # fmt: skip
    requests = [r for per_item in build_requests(ours, items) for r in per_item]
    with torch.no_grad():
        scores = score_requests(model, requests, batch_size=4, max_seq_len=64, device="cpu")
    hf, tok = load_hf(out), transformers.AutoTokenizer.from_pretrained(out)
    pairs = [(c, x) for item in items for c, x in zip(item.contexts, item.choices, strict=True)]
    theirs = [_hf_loglikelihood(hf, tok, c, x) for c, x in pairs]
    assert [s.logprob for s in scores] == pytest.approx(theirs, abs=1e-4)
