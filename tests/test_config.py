"""Config parsing, validation messages, overrides and the resolved-config round trip."""

from pathlib import Path

import pytest

from sdm_jax.blocking.settings import MLACSettings
from sdm_jax.config import (
    Config,
    ConfigError,
    build_config,
    changed_keys,
    config_fingerprint,
    config_to_dict,
    config_to_yaml,
    flat_items,
    load_config,
    parse_override,
    read_yaml,
)


def test_defaults_are_the_reference_settings():
    config = load_config(None)
    assert config.mlac == MLACSettings()
    assert config.train.outer_steps == 50_000
    assert config.model.kind == "bert"


def test_file_then_overrides(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  outer_steps: 100\nmlac:\n  inner_steps: 4\n  outer_lr: 1e-4\n")
    config = load_config(path, ["mlac.inner_steps=2", "mlac.batch_size_choices=[4, 8]"])
    assert config.train.outer_steps == 100
    assert config.mlac.inner_steps == 2
    assert config.mlac.outer_lr == pytest.approx(1e-4)
    assert config.mlac.batch_size_choices == (4, 8)


def test_override_values_are_yaml_scalars():
    assert parse_override("train.stop_after=null") == (["train", "stop_after"], None)
    assert parse_override("mlac.first_order=true") == (["mlac", "first_order"], True)
    assert parse_override("model.name=a=b") == (["model", "name"], "a=b")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["mlac.inner_steps=-1"], "mlac.inner_steps: must be >= 0, got -1"),
        (["train.lr=1"], "unknown key train.lr (did you mean mlac.meta_lr or mlac.outer_lr?)"),
        (["mlac.max_adapt_steps=4"], "unknown key mlac.max_adapt_steps (did you mean "
                                     "mlac.inner_steps?)"),
        (["train.outer_step=3"], "unknown key train.outer_step (did you mean train.outer_steps?)"),
        (["trainer.seed=3"], "unknown key trainer.seed (did you mean train.seed"),
        (["model.kind=cnn"], "model.kind: must be one of bert, mlp, got 'cnn'"),
        (["train.batch_size=1.5"], "train.batch_size: expected an integer, got 1.5"),
        (["train.batch_size=0"], "train.batch_size: must be > 0, got 0"),
        (["mlac.first_order=yes please"], "mlac.first_order: expected true or false"),
        (["mlac.outer_lr=fast"], "mlac.outer_lr: expected a number, got 'fast'"),
        (["mlac.batch_size_choices=[8, x]"], "mlac.batch_size_choices[1]: expected an integer"),
        (["mlac.inner_lr_min=1"], "mlac.inner_lr_min: need 0 < inner_lr_min"),
        (["data.source=toy"], "data.source: must be one of synthetic, hub, bios_pkl, local"),
        (["data.source=bios_pkl"], "data.path: is required when data.source is bios_pkl"),
        (["data.scrub=full"], "data.scrub: must be one of reference, thorough, got 'full'"),
        (["data.scrub_pronouns=thorough"], "data.scrub_pronouns: expected true or false"),
        (["toy.n_train=0"], "toy.n_train: must be > 0, got 0"),
        (["mlac.active_rows=64", "model.kind=mlp"], "mlac.active_rows: needs a text model"),
        (["train.stop_after=9", "train.outer_steps=5"], "train.stop_after: must be <="),
        (["steps=3"], "override 'steps=3': key must be section.name"),
        (["train.outer_steps"], "expected key=value"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(message) or message in text, text


def test_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  outer_steps: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml: line .* not valid YAML"):
        read_yaml(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(listed)
    scalar_section = tmp_path / "scalar.yaml"
    scalar_section.write_text("train: 3\n")
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        load_config(scalar_section)


def test_resolved_yaml_round_trips(tmp_path: Path):
    config = load_config(None, ["model.kind=mlp", "toy.dim=5", "mlac.inner_steps=3"])
    path = tmp_path / "resolved.yaml"
    path.write_text(config_to_yaml(config))
    assert load_config(path) == config


def test_fingerprint_ignores_bookkeeping_only():
    base = load_config(None)
    longer = load_config(None, ["train.outer_steps=7", "train.run_dir=elsewhere"])
    other = load_config(None, ["mlac.inner_steps=3"])
    assert config_fingerprint(base) == config_fingerprint(longer)
    assert config_fingerprint(base) != config_fingerprint(other)
    assert changed_keys(flat_items(base), other) == ["mlac.inner_steps"]
    assert changed_keys(flat_items(base), longer) == []
    toy = load_config(None, ["model.kind=mlp"])
    toy_other_text = load_config(None, ["model.kind=mlp", "data.seed=4"])
    assert config_fingerprint(toy) == config_fingerprint(toy_other_text)


def test_build_config_rejects_non_mapping():
    with pytest.raises(ConfigError, match="mapping of sections"):
        build_config(["train"])
    assert build_config({}) == Config()


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds(path: Path):
    config = load_config(path)
    assert config.train.run_dir.startswith("runs/")
    stated = read_yaml(path)
    defaults = config_to_dict(Config())
    repeated = [f"{s}.{k}" for s, values in stated.items() for k, v in values.items()
                if defaults[s][k] == v]
    assert not repeated, f"{path.name} repeats defaults: {repeated}"


def test_bert_tiny_config_is_the_papers():
    config = load_config(CONFIG_DIR / "bios_bert_tiny.yaml")
    assert config.model.name == "google/bert_uncased_L-2_H-128_A-2"
    assert config.data.source == "hub"
    mlac = config.mlac
    assert (mlac.l_good_base, mlac.l_linear_mi, mlac.l_bad_adapted_grad) == (1, 1, 1)
    assert mlac.l_bad_adapted == mlac.l_bad_base == 0
    assert mlac.inner_steps == 16 and mlac.batch_size_choices == (12, 24, 48)
    assert config.train.outer_steps == 50_000 and config.train.eval_every == 2_500
    assert config.model.max_length == 200  # the reference's tokenizer truncation
    assert config.data.scrub_pronouns and config.data.scrub == "reference"


def test_bert_base_config_follows_the_paper_data_pipeline():
    config = load_config(CONFIG_DIR / "bios_bert_base.yaml")
    assert config.model.max_length == 200
    assert config.data.scrub_pronouns and config.data.scrub == "reference"


def test_scrub_mode_is_a_data_key():
    assert load_config(None).data.scrub == "reference"
    thorough = load_config(None, ["data.scrub=thorough"])
    assert thorough.data.scrub == "thorough"
    assert changed_keys(flat_items(load_config(None)), thorough) == ["data.scrub"]


def test_a_config_extends_its_base_key_by_key(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("mlac:\n  inner_steps: 4\n  outer_lr: 1e-4\n"
                                        "train:\n  outer_steps: 30\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("base: ../base.yaml\nmlac:\n  inner_steps: 0\n")
    config = load_config(tmp_path / "sub" / "child.yaml", ["train.batch_size=4"])
    assert (config.mlac.inner_steps, config.mlac.outer_lr) == (0, 1e-4)
    assert (config.train.outer_steps, config.train.batch_size) == (30, 4)
    assert "\nbase:" not in "\n" + config_to_yaml(config)


def test_a_missing_or_cyclic_base_fails_in_one_line(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself in a cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: no such config file"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base must name another config file"):
        load_config(tmp_path / "d.yaml")


def test_baseline_configs_differ_from_their_base_only_as_named():
    configs = CONFIG_DIR
    for base in ("bios_minilm", "bios_minilm_showcase", "bios_bert_tiny"):
        blocked = flat_items(load_config(configs / f"{base}.yaml"))
        for kind, expected in (("ac", {"mlac.inner_steps": 0}),
                               ("finetuned", {"mlac.inner_steps": 0, "mlac.l_linear_mi": 0.0,
                                              "mlac.l_bad_adapted_grad": 0.0})):
            baseline = flat_items(load_config(configs / f"{base}_{kind}.yaml"))
            if base == "bios_bert_tiny" and kind == "finetuned":
                expected = {**expected, "train.outer_steps": 5000}
            differ = {k: v for k, v in baseline.items()
                      if v != blocked[k] and k != "train.run_dir"}
            assert differ == expected, (base, kind)
