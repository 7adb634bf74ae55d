"""Config validation: unknown keys name the nearest valid one, values are type- and range-checked,
registered names and constructor arguments are looked up; the CLI answers with one line, exit 2."""
import os

import pytest
import yaml

from fastliif.cli import main
from fastliif.train import load_config
from fastliif.train.config import ConfigError, validate
from train_helpers import tiny_liif

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def with_keys(**changes):
    config = tiny_liif()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return config


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml")))
def test_every_committed_config_validates(name):
    config = load_config(os.path.join(CONFIGS, name))
    assert config["epoch_max"] >= 1


@pytest.mark.parametrize("changes, match", [
    ({"iter_per_epoch": 5}, r"unknown key 'iter_per_epoch'; did you mean 'iters_per_epoch'\?"),
    ({"epoch_maxx": 5}, r"unknown key 'epoch_maxx'; did you mean 'epoch_max'\?"),
    ({"train_dataset__batch_sze": 2}, r"unknown key 'train_dataset.batch_sze'; did you mean 'batch_size'\?"),
    ({"val_dataset__wraper": {}}, r"unknown key 'val_dataset.wraper'; did you mean 'wrapper'\?"),
    ({"multi_step_lr__milestone": [1]}, r"unknown key 'multi_step_lr.milestone'; did you mean 'milestones'\?"),
    ({"data_norm__inp__subb": [0.5]}, r"unknown key 'data_norm.inp.subb'; did you mean 'sub'\?"),
    ({"model__arg": {}}, r"unknown key 'model.arg'; did you mean 'args'\?"),
    ({"optimizer__nme": "adam"}, r"unknown key 'optimizer.nme'; did you mean 'name'\?"),
])
def test_unknown_keys_name_the_nearest_valid_one(changes, match):
    with pytest.raises(ConfigError, match=match) as info:
        validate(with_keys(**changes), source="c.yaml")
    assert str(info.value).startswith("c.yaml: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("changes, match", [
    ({"amp": "maybe"}, r"amp must be true or false, got 'maybe'"),
    ({"train_dataset__batch_size": 2.7}, r"train_dataset.batch_size must be an integer, got 2.7"),
    ({"train_dataset__batch_size": 0}, r"train_dataset.batch_size must be >= 1, got 0"),
    ({"iters_per_epoch": 0}, r"iters_per_epoch must be >= 1, got 0"),
    ({"iters_per_epoch": -3}, r"iters_per_epoch must be >= 1, got -3"),
    ({"epoch_val": 0}, r"epoch_val must be >= 1, got 0"),
    ({"epoch_save": 0}, r"epoch_save must be >= 1"),
    ({"epoch_max": "ten"}, r"epoch_max must be an integer, got 'ten'"),
    ({"num_workers": -1}, r"num_workers must be >= 0"),
    ({"seed": 1.5}, r"seed must be an integer"),
    ({"optimizer__args__lr": "1e-4"}, r"optimizer.args.lr must be a number, got '1e-4' .*write 1.0e-4"),
    ({"optimizer__args__lr": -1.0}, r"optimizer.args.lr must be >= 0"),
    ({"multi_step_lr__gamma": 0}, r"multi_step_lr.gamma must be > 0"),
    ({"multi_step_lr__milestones": [0.5]}, r"multi_step_lr.milestones must be a list of epochs"),
    ({"data_norm__gt__div": "half"}, r"data_norm.gt.div must be a non-empty list of numbers"),
    ({"backend": "gpu"}, r"backend must be one of auto, cpu, torch, triton, cuda, reference, got 'gpu'"),
    ({"task": "lif"}, r"task must be one of .*got 'lif'; did you mean 'liif'\?"),
    ({"resume": 3}, r"resume must be a string"),
    ({"train_dataset": "folder"}, r"train_dataset must be a mapping"),
])
def test_values_are_type_and_range_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        validate(with_keys(**changes))


ENC = "model__args__encoder_spec"


@pytest.mark.parametrize("changes, match", [
    ({"model__name": "lif"}, r"model.name: unknown model 'lif'; did you mean 'liif'\?; registered: .*edsr.*rdn"),
    ({"train_dataset__dataset__name": "sample-image"},
     r"train_dataset.dataset.name: unknown dataset 'sample-image'; did you mean 'sample-images'\?; registered: "),
    ({"loss": {"name": "charbonier"}},
     r"loss.name: unknown loss 'charbonier'; did you mean 'charbonnier'\?; choose from l1, l2, charbonnier"),
    ({"optimizer__name": "adm"}, r"optimizer.name: unknown optimizer 'adm'; did you mean 'adam'\?; choose from adam"),
    ({ENC: {"name": "edsr-baseline", "args": {"n_resblock": 2}}},
     r"model.args.encoder_spec.args: model 'edsr-baseline' has no argument 'n_resblock'; did you mean 'n_resblocks'"),
    ({"model__args__imnet_spec": {"name": "mlp", "args": {"hidden": [8]}}},
     r"model 'mlp' has no argument 'hidden'; did you mean 'hidden_list'"),
    ({"model__args__encoder_specc": {}}, r"model 'liif' has no argument 'encoder_specc'; did you mean 'encoder_spec'"),
    ({"train_dataset__wrapper__args__sample_qq": 8},
     r"train_dataset.wrapper.args: dataset 'sr-implicit-downsampled' has no argument 'sample_qq'; "
     r"did you mean 'sample_q'"),
    ({"optimizer__args__lrr": 1.0e-3}, r"optimizer.args: optimizer 'adam' has no argument 'lrr'; did you mean 'lr'"),
    ({"loss": {"name": "charbonnier", "args": {"epss": 1.0e-3}}},
     r"loss.args: loss 'charbonnier' has no argument 'epss'; did you mean 'eps'"),
])
def test_names_and_constructor_args_are_looked_up(changes, match):
    with pytest.raises(ConfigError, match=match) as info:
        validate(with_keys(**changes))
    assert "\n" not in str(info.value)


def test_gan_section_is_checked():
    gan = {"discriminator": {"name": "srgan-discriminator"}, "optimizer": {"name": "adam", "args": {"lr": 1.0e-4}},
           "adv_wieght": 1.0e-3}
    with pytest.raises(ConfigError, match=r"unknown key 'gan.adv_wieght'; did you mean 'adv_weight'"):
        validate(tiny_liif(task="gan", gan=gan))
    gan.pop("adv_wieght")
    gan["pixel"] = "l2"
    with pytest.raises(ConfigError, match=r"gan.pixel must be one of mse, l1, got 'l2'"):
        validate(tiny_liif(task="gan", gan=gan))


def write(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("override, match", [
    ("train_dataset.batch_sze=3", "unknown key 'train_dataset.batch_sze'; did you mean 'batch_size'"),
    ("iter_per_epoch=1", "unknown key 'iter_per_epoch'; did you mean 'iters_per_epoch'"),
    ("amp=maybe", "amp must be true or false"),
    ("train_dataset.batch_size=2.7", "must be an integer, got 2.7"),
    ("epoch_max", "must look like key.sub=value"),
    ("=3", "empty key"),
    ("model.args.encoder_spec.args.n_resblock=2", "has no argument 'n_resblock'; did you mean 'n_resblocks'"),
])
def test_cli_set_typos_are_one_line_exit_2_before_any_work(tmp_path, capsys, override, match):
    path = write(tmp_path, tiny_liif())
    save = tmp_path / "out"
    assert main(["train", path, "--save-dir", str(save), "--quiet", "--set", override]) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("fastliif train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not save.exists()  # refused before any work


def test_cli_bad_yaml_and_directory(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and err.count("\n") == 1
    assert main(["train", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_set_reads_exponent_numbers_as_numbers(tmp_path):
    path = write(tmp_path, tiny_liif())
    config = load_config(path, ["optimizer.args.lr=1e-4", "data_norm.inp.sub=[0.25]", "model.name=liif"])
    assert config["optimizer"]["args"]["lr"] == 1e-4 and config["data_norm"]["inp"]["sub"] == [0.25]
    assert config["model"]["name"] == "liif"  # text stays text
