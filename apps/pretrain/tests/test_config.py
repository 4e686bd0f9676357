"""Config loading: defaults, YAML, overrides, and the errors a user sees."""

import pytest

from pretrain.config import PretrainConfig, default_yaml, load_pretrain_config
from pretrain.loading import ConfigError, to_yaml


def test_default_yaml_loads_into_typed_configs():
    config = load_pretrain_config(None, [])
    assert isinstance(config, PretrainConfig)
    assert [s.name for s in config.data.sources] == ["web", "books", "code"]
    assert config.model.d_model == 128 and config.model_preset == "debug"
    assert config.loader.proportions == {"web": 0.5, "books": 0.25, "code": 0.25}
    assert default_yaml().is_file()


def test_overrides_are_typed_and_win_over_the_file():
    config = load_pretrain_config(
        None, ["train.lr=1e-3", "model.n_layers=2", "train.betas=[0.8,0.9]"]
    )
    assert config.train.lr == pytest.approx(1e-3)
    assert config.model.n_layers == 2
    assert config.train.betas == (0.8, 0.9)


def test_preset_is_the_base_of_the_model_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_preset: gpt2-124m\n")
    config = load_pretrain_config(str(path), [])
    assert (config.model.d_model, config.model.n_layers, config.model.n_heads) == (768, 12, 12)
    config = load_pretrain_config(str(path), ["model.n_layers=3"])
    assert (config.model.d_model, config.model.n_layers) == (768, 3)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.stepz=3", "train.stepz"),  # typo: names the key and suggests the right one
        ("train.steps=abc", "train.steps"),
        ("model.activation=tanh", "model.activation"),
        ("model_preset=nope", "model_preset"),
        ("trian.steps=3", "trian"),
        ("nonsense", "key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_pretrain_config(None, [override])


def test_validation_errors_name_the_field():
    with pytest.raises(ConfigError, match="n_heads"):
        load_pretrain_config(None, ["model.n_heads=5"])  # 5 does not divide 128
    with pytest.raises(ConfigError, match="proportions"):
        load_pretrain_config(None, ["loader.proportions.web=-1"])


def test_bad_yaml_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrain_config(str(tmp_path / "missing.yaml"), [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_pretrain_config(str(bad), [])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown.yaml.*stepz"):
        load_pretrain_config(str(unknown), [])


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_pretrain_config(None, ["train.steps=70"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(config))
    assert load_pretrain_config(str(path), []) == config


def test_a_preset_gives_the_presets_model():
    config = load_pretrain_config(None, ["model_preset=llama-1b"])
    model = config.model
    assert (model.d_model, model.n_layers, model.n_heads, model.n_kv_heads) == (2048, 16, 32, 8)
    config = load_pretrain_config(None, ["model_preset=llama-1b", "model.n_layers=2"])
    assert (config.model.d_model, config.model.n_layers) == (2048, 2)  # explicit keys on top
    with pytest.raises(ConfigError, match="n_heads=32 must divide d_model=100"):
        load_pretrain_config(None, ["model_preset=llama-1b", "model.d_model=100"])


def test_model_keys_of_the_file_give_way_to_a_preset_on_the_command_line(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("model_preset: debug\nmodel:\n  d_model: 64\n  n_heads: 2\n")
    with caplog.at_level("WARNING"):
        config = load_pretrain_config(str(path), ["model_preset=gpt2-124m"])
    assert (config.model.d_model, config.model.n_heads) == (768, 12)
    assert "model.d_model, model.n_heads" in caplog.text  # said, not silent


def test_the_recorded_model_is_the_one_that_runs():
    config = load_pretrain_config(None, ["tokenizer.vocab_size=1000", "shards.seq_len=64"])
    assert (config.model.vocab_size, config.model.max_seq_len) == (1000, 64)
    with pytest.raises(ConfigError, match="model.vocab_size.*tokenizer.vocab_size"):
        load_pretrain_config(None, ["model.vocab_size=123"])
    with pytest.raises(ConfigError, match="model.max_seq_len.*shards.seq_len"):
        load_pretrain_config(None, ["model.max_seq_len=99"])


def test_batch_warmup_and_loader_phases_are_refused_together():
    args = ["train.batch_warmup_tokens=1024", "train.grad_accum_steps=2"]
    load_pretrain_config(None, args)  # alone it is fine
    phases = "loader.seq_len_schedule=[{until_step: 4, seq_len: 16}]"
    with pytest.raises(ConfigError, match="batch_warmup_tokens.*loader.seq_len_schedule"):
        load_pretrain_config(None, [*args, phases])


# --- one set of defaults: the dataclasses; default.yaml spells them out; a file is laid over them


def test_the_shipped_yaml_is_the_defaults(tmp_path):
    """default.yaml names every default with comments; read as a config file it changes nothing
    (an empty file is the dataclass defaults)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    defaults = load_pretrain_config(str(empty), [])
    assert load_pretrain_config(str(default_yaml()), []) == defaults
    assert load_pretrain_config(None, []) == defaults
    assert (defaults.train.steps, defaults.train.lr, defaults.eval.limit) == (300, 6e-3, 100)


def test_a_partial_config_file_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {steps: 50}\nloader: {batch_size: 4}\n")
    config = load_pretrain_config(str(path), [])
    expected = load_pretrain_config(None, ["train.steps=50", "loader.batch_size=4"])
    assert config == expected
    assert config.train.lr == pytest.approx(6e-3) and config.train.warmup_steps == 30
    assert config.loader.proportions == {"web": 0.5, "books": 0.25, "code": 0.25}
    assert [s.name for s in config.data.sources] == ["web", "books", "code"]


def test_a_mapping_named_in_a_file_or_override_replaces_the_default(tmp_path):
    """Merged key by key, `proportions: {web: 1}` would keep books and code at 0.25 each."""
    path = tmp_path / "mine.yaml"
    path.write_text("loader: {proportions: {web: 0.75, code: 0.25}}\neval: {bpb_sets: {}}\n")
    config = load_pretrain_config(str(path), [])
    assert config.loader.proportions == {"web": 0.75, "code": 0.25}
    assert config.eval.bpb_sets == {}
    config = load_pretrain_config(None, ["eval.bpb_sets={own: my.jsonl}"])
    assert config.eval.bpb_sets == {"own": "my.jsonl"}


def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path, capsys):
    """PyYAML keeps the last of two keys: a second `train:` block silently reset the first's."""
    from pretrain.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  precision: fp32\nrun:\n  name: x\ntrain:\n  steps: 5\n")
    with pytest.raises(ConfigError, match=rf"{path}.*line 6: key 'train' is given twice.*line 1"):
        load_pretrain_config(str(path), [])
    path.write_text("train:\n  lr: 0.01\n  steps: 3\n  lr: 0.02\n")  # nested
    with pytest.raises(ConfigError, match=r"line 4: key 'lr' is given twice .*first on line 2"):
        load_pretrain_config(str(path), [])
    assert main(["show-config", "--config", str(path)]) == 2
    assert "key 'lr' is given twice" in capsys.readouterr().err


def test_interpolation_in_a_config_file_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    """`${oc.env:...}` in a downloaded config would copy a secret into config.yaml."""
    from pretrain.cli import main

    monkeypatch.setenv("PRETRAIN_TEST_SECRET", "hunter2")
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  name: ok\n  root: ${oc.env:PRETRAIN_TEST_SECRET}\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 3: .*interpolation.*--allow-env"):
        load_pretrain_config(str(path), [])
    assert main(["show-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "hunter2" not in out + err and "--allow-env" in err
    path.write_text("train:\n  steps: 40\n  log_every: ${train.steps}\n")  # any interpolation
    with pytest.raises(ConfigError, match="interpolation"):
        load_pretrain_config(str(path), [])
    assert load_pretrain_config(str(path), [], allow_env=True).train.log_every == 40
    assert main(["show-config", "--allow-env", "--config", str(path)]) == 0


def test_overrides_with_a_key_twice_are_refused():
    with pytest.raises(ConfigError, match=r"override .*key 'web' is given twice"):
        load_pretrain_config(None, ["loader.proportions={web: 1, web: 2}"])


@pytest.mark.parametrize(
    "override, where",
    [
        ("loader.proportions={web: 0.5, bookz: 0.5}", "loader.proportions: 'bookz'"),
        ("loader.epochs={codez: 1}", "loader.epochs: 'codez'"),
        (
            "loader.schedule=[{until_step: null, proportions: {wbe: 1}}]",
            r"loader.schedule\[0\].proportions: 'wbe'",
        ),
    ],
)
def test_a_mixture_naming_no_source_fails_at_config_time(override, where):
    """Not at train, after curation, tokenizer and shards ran (issue 23)."""
    with pytest.raises(ConfigError, match=f"{where} names no data source.*web, books, code"):
        load_pretrain_config(None, [override])
