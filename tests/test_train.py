"""The trainer: configs, losses, a LIIF run that lowers the loss, exact resume, checkpoints in
the official format, reference backend parity, AMP, the CLI."""
import json
import math
import os

import pytest
import torch
import yaml

from fastliif.checkpoint import load_checkpoint, read_checkpoint
from fastliif.cli import main
from fastliif.train import load_config, train
from fastliif.train.config import validate
from fastliif.train.losses import CharbonnierLoss, MultistageLoss, make_loss
from fastliif.train.tasks import DataNorm
from train_helpers import tiny_liif

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def quiet(*args):
    pass


def write_yaml(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


# ---- configs -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml")))
def test_shipped_configs_parse_and_name_registered_parts(name):
    from fastliif import data, models
    config = load_config(os.path.join(CONFIGS, name))
    assert config["model"]["name"] in models.names()
    for section in ("train_dataset", "val_dataset"):
        if config.get(section):
            assert config[section]["dataset"]["name"] in data.names()
            if config[section].get("wrapper"):
                assert config[section]["wrapper"]["name"] in data.names()


def test_overrides_and_defaults(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", tiny_liif())
    config = load_config(path, ["train_dataset.batch_size=2", "optimizer.args.lr=0.5", "amp=true"])
    assert config["train_dataset"]["batch_size"] == 2 and config["optimizer"]["args"]["lr"] == 0.5
    assert config["amp"] is True and config["task"] == "liif" and config["loss"] == {"name": "l1"}


@pytest.mark.parametrize("change, match", [
    ({"epoch_max": 0}, "epoch_max"),
    ({"task": "nope"}, "task must be"),
    ({"task": "gan", "gan": {"discriminator": {"name": "srgan-discriminator"}}, "amp": True}, "amp is not supported"),
    ({"train_dataset": {"dataset": {"name": "image-folder"}}}, "batch_size"),
])
def test_bad_configs_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        validate(tiny_liif(**change))


def test_missing_keys_and_files(tmp_path):
    bad = dict(tiny_liif())
    del bad["optimizer"]
    with pytest.raises(ValueError, match="optimizer"):
        validate(bad)
    with pytest.raises(FileNotFoundError, match="config not found"):
        load_config(str(tmp_path / "none.yaml"))
    (tmp_path / "x.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(str(tmp_path / "x.yaml"))


# ---- losses --------------------------------------------------------------------------------

def test_charbonnier_matches_formula_and_multistage_sums():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    eps = 1e-2
    expect = torch.sqrt((a.double() - b.double()) ** 2 + eps ** 2).mean()
    assert torch.allclose(CharbonnierLoss(eps)(a, b).double(), expect, rtol=1e-6)
    stages = [torch.randn(2, 3, 5, 4) for _ in range(3)]
    got = MultistageLoss("l1", weights=[1, 0.5, 2])(stages, b)
    want = sum(w * (s - b).abs().mean() for w, s in zip([1, 0.5, 2], stages))
    assert torch.allclose(got, want)
    with pytest.raises(ValueError, match="3 stages"):
        MultistageLoss("l1", weights=[1, 1])(stages, b)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("l7")
    with pytest.raises(ValueError, match="eps"):
        CharbonnierLoss(0)


def test_data_norm_round_trip():
    norm = DataNorm({"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.1, 0.2, 0.3], "div": [2, 3, 4]}}, "cpu")
    x = torch.rand(2, 3, 4, 5)
    assert torch.allclose(norm.inp(x), (x - 0.5) / 0.5)
    q = torch.rand(2, 7, 3)
    assert torch.allclose(norm.ungt(norm.gt(q, -1), -1), q, atol=1e-6)
    assert torch.allclose(norm.gt(q, -1)[..., 2], (q[..., 2] - 0.3) / 4)


# ---- training runs -------------------------------------------------------------------------

def _fixed_batch_loss(model, config):
    """L1 on a fixed held-out batch (same seed every call)."""
    from fastliif import data
    torch.manual_seed(123)
    spec = config["train_dataset"]
    ds = data.make(spec["wrapper"], args={"dataset": data.make(spec["dataset"])})
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    with torch.no_grad():
        pred = model((batch["inp"] - 0.5) / 0.5, batch["coord"], batch["cell"])
    return float((pred - (batch["gt"] - 0.5) / 0.5).abs().mean())


def test_liif_training_lowers_the_loss_and_writes_official_checkpoints(tmp_path):
    config = validate(tiny_liif(epoch_max=3, iters_per_epoch=12))
    from fastliif.train.loop import build_model
    torch.manual_seed(config["seed"])
    before = _fixed_batch_loss(build_model(config["model"], "auto"), config)
    history = train(config, str(tmp_path), log=quiet, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["val_psnr"]) for h in history)
    assert history[1]["lr"] == pytest.approx(history[0]["lr"] * 0.5)  # MultiStepLR at epoch 1
    model = load_checkpoint(str(tmp_path / "epoch-last.pth"))  # official format
    after = _fixed_batch_loss(model, config)
    assert after < 0.7 * before, (before, after)
    for name in ("epoch-1.pth", "epoch-3.pth", "epoch-best.pth", "history.json", "history.png"):
        assert (tmp_path / name).exists(), name
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 3
    saved = read_checkpoint(str(tmp_path / "epoch-last.pth"))
    assert saved["epoch"] == 3 and saved["optimizer"]["name"] == "adam" and "sd" in saved["optimizer"]


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    config = validate(tiny_liif(epoch_max=2, iters_per_epoch=4))
    train(config, str(tmp_path / "full"), log=quiet, progress=False)
    first = validate(tiny_liif(epoch_max=1, iters_per_epoch=4))
    train(first, str(tmp_path / "part"), log=quiet, progress=False)
    resumed = validate(tiny_liif(epoch_max=2, iters_per_epoch=4, resume=str(tmp_path / "part" / "epoch-last.pth")))
    history = train(resumed, str(tmp_path / "part"), log=quiet, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]  # history carried over
    full = read_checkpoint(str(tmp_path / "full" / "epoch-last.pth"))["model"]["sd"]
    part = read_checkpoint(str(tmp_path / "part" / "epoch-last.pth"))["model"]["sd"]
    for k in full:
        assert torch.allclose(full[k], part[k], rtol=1e-5, atol=1e-6), k


def test_reference_backend_trains_the_same_numbers(tmp_path):
    runs = {}
    for backend in ("auto", "reference"):
        config = validate(tiny_liif(epoch_max=1, iters_per_epoch=3, backend=backend))
        runs[backend] = train(config, str(tmp_path / backend), log=quiet, progress=False)[0]
    assert runs["auto"]["loss"] == pytest.approx(runs["reference"]["loss"], rel=1e-4)
    assert runs["auto"]["val_psnr"] == pytest.approx(runs["reference"]["val_psnr"], abs=1e-3)


def test_amp_on_cpu_runs(tmp_path):
    config = validate(tiny_liif(epoch_max=1, iters_per_epoch=2, amp=True))
    history = train(config, str(tmp_path), log=quiet, progress=False)
    assert math.isfinite(history[0]["loss"])


def test_train_cli(tmp_path, capsys):
    path = write_yaml(tmp_path / "c.yaml", tiny_liif())
    code = main(["train", path, "--save-dir", str(tmp_path / "out"), "--epochs", "1", "--quiet",
                 "--set", "iters_per_epoch=2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "epoch 1:" in out and (tmp_path / "out" / "epoch-last.pth").exists()
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config not found" in capsys.readouterr().err


def test_diverged_run_stops_with_a_clear_error(tmp_path):
    # a zero divisor makes the normalised input infinite: the loss is NaN from the first step
    config = validate(tiny_liif(epoch_max=1, iters_per_epoch=3,
                                data_norm={"inp": {"sub": [0.5], "div": [0.0]}}))
    with pytest.raises(FloatingPointError, match="at epoch 1, step 0"):
        train(config, str(tmp_path), log=quiet, progress=False)


def test_diverged_run_on_the_cli_is_one_line_not_a_traceback(tmp_path, capsys):
    path = write_yaml(tmp_path / "c.yaml", tiny_liif(epoch_max=1, iters_per_epoch=3,
                                                     data_norm={"inp": {"sub": [0.5], "div": [0.0]}}))
    assert main(["train", path, "--save-dir", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastliif train: error: loss is") and "Traceback" not in err[0]
