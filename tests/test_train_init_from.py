"""``init_from`` (fastliif/train/loop.py): a new run that starts from another checkpoint's model
weights (fine-tuning the bundled model), with a fresh optimizer, epoch count and history."""
import pytest
import torch

from fastliif.checkpoint import read_checkpoint
from fastliif.train import train
from fastliif.train.config import ConfigError, validate
from fastliif.atomic import save_torch
from train_helpers import tiny_liif


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run: its epoch-last.pth is what the fine-tunes start from."""
    out = tmp_path_factory.mktemp("base")
    train(validate(tiny_liif(epoch_max=1, iters_per_epoch=3)), str(out), log=quiet, progress=False)
    return out / "epoch-last.pth"


def sd_of(path):
    return read_checkpoint(str(path))["model"]["sd"]


def test_the_run_starts_from_the_checkpoints_weights(tmp_path, trained):
    # lr 0: Adam moves nothing, so the weights at the end are the ones the run started from
    config = tiny_liif(epoch_max=1, iters_per_epoch=2, init_from=str(trained),
                       optimizer={"name": "adam", "args": {"lr": 0.0}})
    logs = []
    history = train(validate(config), str(tmp_path), log=logs.append, progress=False)
    start, end = sd_of(trained), sd_of(tmp_path / "epoch-last.pth")
    assert set(start) == set(end)
    for k in start:
        assert torch.equal(start[k], end[k]), k
    assert [h["epoch"] for h in history] == [1]  # a new run: its own epochs and history
    assert any("init_from" in str(line) for line in logs)


def test_fp16_checkpoint_starts_an_fp32_run_and_training_moves_on(tmp_path, trained):
    saved = read_checkpoint(str(trained))
    saved["model"]["sd"] = {k: v.half() if v.is_floating_point() else v for k, v in saved["model"]["sd"].items()}
    half = tmp_path / "half.pth"
    save_torch(saved, str(half))
    train(validate(tiny_liif(epoch_max=1, iters_per_epoch=2, init_from=str(half),
                             optimizer={"name": "adam", "args": {"lr": 0.0}})),
          str(tmp_path / "a"), log=quiet, progress=False)
    end = sd_of(tmp_path / "a" / "epoch-last.pth")
    for k, v in saved["model"]["sd"].items():
        assert end[k].dtype == torch.float32 and torch.equal(end[k], v.float()), k
    # with a real lr the fine-tune changes the weights and does not start from scratch: its first
    # epoch's validation is close to the base run's last, far above an untrained model's
    history = train(validate(tiny_liif(epoch_max=1, iters_per_epoch=2, init_from=str(half),
                                       optimizer={"name": "adam", "args": {"lr": 1e-3}})),
                    str(tmp_path / "b"), log=quiet, progress=False)
    tuned = sd_of(tmp_path / "b" / "epoch-last.pth")
    assert any(not torch.equal(tuned[k], end[k]) for k in tuned)
    base_psnr = read_checkpoint(str(trained))["fastliif"]["history"][-1]["val_psnr"]
    assert history[0]["val_psnr"] > base_psnr - 1.0


def test_a_stopped_fine_tune_resumes_exactly(tmp_path, trained):
    full = validate(tiny_liif(epoch_max=2, iters_per_epoch=3, init_from=str(trained)))
    train(full, str(tmp_path / "full"), log=quiet, progress=False)
    train(validate(tiny_liif(epoch_max=1, iters_per_epoch=3, init_from=str(trained))), str(tmp_path / "part"),
          log=quiet, progress=False)
    resumed = validate(tiny_liif(epoch_max=2, iters_per_epoch=3, init_from=str(trained),
                                 resume=str(tmp_path / "part" / "epoch-last.pth")))
    train(resumed, str(tmp_path / "part"), log=quiet, progress=False)
    a, b = sd_of(tmp_path / "full" / "epoch-last.pth"), sd_of(tmp_path / "part" / "epoch-last.pth")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_problems_are_one_line_config_errors(tmp_path, trained):
    other = tmp_path / "other"
    wide = tiny_liif(epoch_max=1, iters_per_epoch=1)
    wide["model"]["args"]["imnet_spec"]["args"]["hidden_list"] = [24, 16]
    train(validate(wide), str(other), log=quiet, progress=False)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    save_torch({"epoch": 1}, str(tmp_path / "nomodel.pth"))
    cases = [
        (str(tmp_path / "missing.pth"), {}, r"^init_from: .*missing\.pth"),
        (str(tmp_path / "junk.pth"), {}, r"^init_from: "),
        (str(tmp_path / "nomodel.pth"), {}, r"^init_from: .* is not a model checkpoint"),
        (str(other / "epoch-last.pth"), {}, r"^init_from: .* does not fit the configured model \(other shape"),
        (str(trained), {"init": "bilinear"}, r"init: bilinear and init_from: set one of them"),
    ]
    for path, extra, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            train(validate(tiny_liif(epoch_max=1, iters_per_epoch=1, init_from=path, **extra)),
                  str(tmp_path / "run"), log=quiet, progress=False)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="init_from"):
        validate(tiny_liif(init_from=3))
