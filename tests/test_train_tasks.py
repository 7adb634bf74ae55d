"""Training smoke tests beyond LIIF: UDVD (multistage loss on online SRMD degradations), fixed-scale
image models (A2N, SRCNN) and the SRGAN step, all on photographs bundled with scikit-image."""
import copy
import math

import pytest
import torch

from fastliif import data
from fastliif.checkpoint import load_model, read_checkpoint
from fastliif.train import train
from fastliif.train.config import validate
from fastliif.train.loop import build_model
from fastliif.train.tasks import DataNorm, forward, to_device


def quiet(*args):
    pass


@pytest.fixture(autouse=True)
def pca_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTLIIF_CACHE", str(tmp_path / "cache"))


def image_config(model, wrapper_args, **changes):
    config = {
        "train_dataset": {
            "dataset": {"name": "sample-images", "args": {"names": ["astronaut", "coffee"], "repeat": 8}},
            "wrapper": {"name": "sr-downsampled", "args": wrapper_args},
            "batch_size": 2,
        },
        "val_dataset": {
            "dataset": {"name": "sample-images", "args": {"names": ["chelsea"]}},
            "wrapper": {"name": "sr-downsampled", "args": {**wrapper_args, "augment": False}},
            "batch_size": 1,
        },
        "model": model,
        "optimizer": {"name": "adam", "args": {"lr": 1e-3}},
        "epoch_max": 1,
        "iters_per_epoch": 6,
        "seed": 1,
    }
    config.update(changes)
    return config


def fixed_batch_loss(model, config, task):
    torch.manual_seed(99)
    spec = config["train_dataset"]
    ds = data.make(spec["wrapper"], args={"dataset": data.make(spec["dataset"])})
    batch = to_device(torch.utils.data.default_collate([ds[i] for i in range(2)]), "cpu")
    norm = DataNorm(config.get("data_norm"), "cpu")
    with torch.no_grad():
        pred, target, _ = forward(task, model, batch, norm)
    preds = pred if isinstance(pred, (tuple, list)) else (pred,)
    return sum(float((p - target).abs().mean()) for p in preds)


def run_and_compare(config, tmp_path, task):
    config = validate(copy.deepcopy(config))
    torch.manual_seed(config["seed"])
    before = fixed_batch_loss(build_model(config["model"], "auto"), config, task)
    history = train(config, str(tmp_path), log=quiet, progress=False)
    after = fixed_batch_loss(load_model(str(tmp_path / "epoch-last.pth")), config, task)
    assert math.isfinite(history[-1]["loss"]) and math.isfinite(history[-1]["val_psnr"])
    return before, after


def test_udvd_training_lowers_the_multistage_loss(tmp_path):
    config = {
        "train_dataset": {
            "dataset": {"name": "sample-images", "args": {"names": ["astronaut", "coffee"], "repeat": 8}},
            "wrapper": {"name": "udvd-online", "args": {"scale": 2, "patch_size": 24, "noise_range": [0, 10]}},
            "batch_size": 2,
        },
        "val_dataset": {
            "dataset": {"name": "sample-images", "args": {"names": ["chelsea"]}},
            "wrapper": {"name": "udvd-online", "args": {"scale": 2, "patch_size": 24, "seed": 0}},
            "batch_size": 1,
        },
        "model": {"name": "udvd"},
        "loss": {"name": "multistage", "args": {"base": "l1"}},
        "optimizer": {"name": "adam", "args": {"lr": 2e-4}},
        "epoch_max": 1, "iters_per_epoch": 8, "seed": 0,
    }
    before, after = run_and_compare(config, tmp_path, "udvd")
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("model", [
    {"name": "a2n", "args": {"scale": 2, "nf": 8, "unf": 8, "nb": 2}},
    {"name": "srcnn", "args": {"scale": 2, "n1": 16, "n2": 8}},
])
def test_fixed_scale_models_train(model, tmp_path):
    config = image_config(model, {"inp_size": 16, "scale": 2, "augment": True, "resize": "matlab"},
                          loss={"name": "charbonnier"}, iters_per_epoch=10)
    before, after = run_and_compare(config, tmp_path, "image")
    assert after < before, (before, after)


def test_srgan_step_trains_both_networks_and_resumes(tmp_path):
    config = image_config({"name": "srresnet", "args": {"scale": 2, "nf": 8, "nb": 1}},
                          {"inp_size": 16, "scale": 2, "augment": True, "resize": "matlab"},
                          task="gan", iters_per_epoch=3,
                          gan={"discriminator": {"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 16}},
                               "optimizer": {"name": "adam", "args": {"lr": 1e-3}}, "adv_weight": 1e-3})
    config = validate(config)
    train(config, str(tmp_path), log=quiet, progress=False)
    first = read_checkpoint(str(tmp_path / "epoch-last.pth"))
    assert first["discriminator"]["name"] == "srgan-discriminator" and "sd" in first["d_optimizer"]
    resumed = validate(dict(config, epoch_max=2, resume=str(tmp_path / "epoch-last.pth")))
    history = train(resumed, str(tmp_path), log=quiet, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    second = read_checkpoint(str(tmp_path / "epoch-last.pth"))
    for net in ("model", "discriminator"):  # both networks stepped during the resumed epoch
        moved = [k for k, v in second[net]["sd"].items()
                 if v.is_floating_point() and not torch.equal(v, first[net]["sd"][k])]
        assert moved, f"{net} never stepped"
    # the discriminator's optimizer state was restored, not restarted: its step count went on
    steps = [int(s["step"]) for s in second["d_optimizer"]["sd"]["state"].values()]
    assert steps and all(n == 6 for n in steps), steps


def test_srgan_resume_problems_and_discriminator_lr_override(tmp_path):
    from fastliif.train.config import ConfigError
    config = validate(image_config({"name": "srresnet", "args": {"scale": 2, "nf": 8, "nb": 1}},
                                   {"inp_size": 16, "scale": 2, "resize": "matlab"}, task="gan", iters_per_epoch=1,
                                   val_dataset=None,
                                   gan={"discriminator": {"name": "srgan-discriminator",
                                                          "args": {"nf": 4, "fc_dim": 16}},
                                        "optimizer": {"name": "adam", "args": {"lr": 1e-3}}}))
    train(config, str(tmp_path / "a"), log=quiet, progress=False)
    last = str(tmp_path / "a" / "epoch-last.pth")
    # a generator-only checkpoint cannot resume a GAN run
    saved = read_checkpoint(last)
    torch.save({k: v for k, v in saved.items() if k != "discriminator"}, tmp_path / "g-only.pth")
    with pytest.raises(ConfigError, match="no discriminator"):
        train(validate(dict(config, epoch_max=2, resume=str(tmp_path / "g-only.pth"))), str(tmp_path / "b"),
              log=quiet, progress=False)
    logs = []
    gan = dict(config["gan"], optimizer={"name": "adam", "args": {"lr": 4e-4}})
    train(validate(dict(config, epoch_max=2, resume=last, gan=gan)), str(tmp_path / "c"), log=logs.append,
          progress=False)
    assert any("gan.optimizer.args.lr = 0.0004 in the config overrides the checkpoint's 0.001" in m for m in logs)
    d_groups = read_checkpoint(str(tmp_path / "c" / "epoch-last.pth"))["d_optimizer"]["sd"]["param_groups"]
    assert all(g["lr"] == pytest.approx(4e-4) for g in d_groups)
