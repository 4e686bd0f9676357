import pytest

from llm_train.config import TrainConfig


def test_defaults_and_min_lr():
    config = TrainConfig(steps=100, lr=1e-3, min_lr_ratio=0.1)
    assert config.min_lr == pytest.approx(1e-4)
    assert config.betas == (0.9, 0.95)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("steps", 0, ">= 1"),
        ("lr", -1.0, "> 0"),
        ("warmup_steps", 20, "[0, steps=10]"),
        ("schedule", "step", "one of"),
        ("precision", "fp16", "one of"),
        ("nan_policy", "ignore", "one of"),
        ("spike_policy", "restart", "one of"),
        ("spike_lr_factor", 1.5, "(0, 1]"),
        ("max_rollbacks", -1, ">= 0"),
        ("betas", (0.9, 1.5), "[0, 1)"),
        ("grad_accum_steps", 0, ">= 1"),
    ],
)
def test_validation_names_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as err:
        TrainConfig(steps=10, **{field: value}) if field != "steps" else TrainConfig(steps=value)
    assert f"TrainConfig.{field}={value!r}" in str(err.value)
    assert allowed in str(err.value)


def test_omegaconf_structured_round_trip(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    OmegaConf = omegaconf.OmegaConf
    config = TrainConfig(steps=50, schedule="wsd", betas=(0.8, 0.9), precision="fp32")
    path = tmp_path / "train.yaml"
    OmegaConf.save(OmegaConf.structured(config), path)
    schema = OmegaConf.structured(TrainConfig)
    merged = OmegaConf.merge(schema, OmegaConf.load(path), OmegaConf.from_dotlist(["lr=0.01"]))
    loaded = OmegaConf.to_object(merged)
    assert isinstance(loaded, TrainConfig)
    assert loaded.betas == (0.8, 0.9) and loaded.schedule == "wsd" and loaded.lr == 0.01
    assert loaded == TrainConfig(
        steps=50, schedule="wsd", betas=(0.8, 0.9), precision="fp32", lr=0.01
    )
    with pytest.raises(omegaconf.errors.ConfigKeyError):
        OmegaConf.merge(schema, OmegaConf.from_dotlist(["learning_rate=0.1"]))
    with pytest.raises(omegaconf.errors.ValidationError):
        OmegaConf.merge(schema, OmegaConf.from_dotlist(["schedule=step"]))
