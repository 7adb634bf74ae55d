"""The trainer under bad inputs and interruptions: every --resume problem, an unwritable save
dir and a full disk are one-line errors (exit 2); checkpoints are written atomically; a config
learning rate that differs from the resumed run's wins."""
import errno
import os

import pytest
import torch
import yaml

from fastliif import atomic
from fastliif.cli import main
from fastliif.train import train
from fastliif.train.config import ConfigError, validate
from train_helpers import tiny_liif


def quiet(*args):
    pass


def tiny(**changes):
    """One step per epoch, no validation, no periodic saves: a run takes well under a second."""
    return tiny_liif(**{"val_dataset": None, "iters_per_epoch": 1, "epoch_save": None, **changes})


def write(tmp_path, config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_cli(capsys, *argv):
    code = main(["train", *argv, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *parts):
    assert code == 2, err
    assert err.startswith("fastliif train: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 1-epoch run's checkpoint (model and optimizer state)."""
    out = tmp_path_factory.mktemp("run")
    train(validate(tiny(epoch_max=1)), str(out), log=quiet, progress=False)
    return out / "epoch-last.pth"


# ---- --resume problems ---------------------------------------------------------------------

def test_resume_problems_are_one_line_errors(tmp_path, capsys, finished_run):
    config = write(tmp_path, tiny(epoch_max=2))
    good = torch.load(finished_run, weights_only=True)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(finished_run.read_bytes()[:5000])
    pickled = tmp_path / "pickled.pth"
    torch.save({**good, "extra": ConfigError("runs code on unpickling")}, pickled)
    model_only = tmp_path / "model-only.pth"
    torch.save({"model": good["model"]}, model_only)
    no_opt_sd = tmp_path / "no-opt-sd.pth"
    torch.save({**good, "optimizer": {"name": "adam", "args": {}, "sd": None}}, no_opt_sd)
    other_model = tmp_path / "other.pth"
    torch.save({**good, "model": {**good["model"], "sd": {"x": torch.zeros(1)}}}, other_model)
    cases = [
        (tmp_path / "missing.pth", "checkpoint not found"),
        (tmp_path, "is a directory"),
        (truncated, "is not a readable PyTorch checkpoint"),
        (pickled, "cannot be loaded safely (weights_only=True)"),
        (model_only, "has no optimizer state"),
        (no_opt_sd, "has no optimizer state"),
        (other_model, "does not fit the configured model"),
    ]
    for path, part in cases:
        save = tmp_path / f"out-{os.path.basename(path)}"
        code, out, err = run_cli(capsys, config, "--save-dir", str(save), "--resume", str(path))
        assert_one_line_error(code, err, "resume: ", str(path), part)
        assert "epoch 2" not in out and not (save / "epoch-last.pth").exists()
        if part != "does not fit the configured model":
            assert "parameters" not in out  # refused before the model was even built


# ---- save dir ------------------------------------------------------------------------------

def test_unwritable_save_dir_refused_before_the_first_epoch(tmp_path, capsys, monkeypatch):
    config = write(tmp_path, tiny(epoch_max=1))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for save in (a_file, a_file / "sub"):  # an existing file; a folder that cannot be created
        code, out, err = run_cli(capsys, config, "--save-dir", str(save))
        assert_one_line_error(code, err, f"save dir {save}: cannot write there")
        assert "epoch 1" not in out and "parameters" not in out  # nothing was built or trained
    # a read-only folder (simulated: this suite may run as root, who can write anywhere)
    read_only = tmp_path / "ro"
    read_only.mkdir()

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr("tempfile.TemporaryFile", denied)
    code, out, err = run_cli(capsys, config, "--save-dir", str(read_only))
    assert_one_line_error(code, err, "Permission denied")
    assert "epoch 1" not in out and os.listdir(read_only) == []


# ---- atomic checkpoints, disk full ---------------------------------------------------------

def test_interrupted_save_keeps_every_previous_checkpoint(tmp_path, monkeypatch):
    """The rewrite of epoch-best.pth interrupted after its bytes reached the temporary file (the
    fsync raises, as a Ctrl-C or a kill would stop it) leaves the old epoch-best.pth, epoch-1.pth
    and history.json as they were, and no temporary file behind."""
    save = tmp_path / "out"
    config = tiny(epoch_max=1, epoch_save=1, val_dataset=tiny_liif()["val_dataset"])
    train(validate(config), str(save), log=quiet, progress=False)
    before = {p: (save / p).read_bytes() for p in ("epoch-best.pth", "epoch-1.pth", "history.json")}
    resume = torch.load(save / "epoch-last.pth", weights_only=True)
    resume["fastliif"]["best"] = -float("inf")  # so that epoch 2 is the new best whatever its PSNR
    torch.save(resume, tmp_path / "resume.pth")
    real_fsync, interrupted = os.fsync, []

    def fsync(fd):
        if ".epoch-best.pth." in os.readlink(f"/proc/self/fd/{fd}"):
            interrupted.append(fd)
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        train(validate({**config, "epoch_max": 2, "resume": str(tmp_path / "resume.pth")}), str(save), log=quiet,
              progress=False)
    assert interrupted
    for name, data in before.items():
        assert (save / name).read_bytes() == data, name
    assert torch.load(save / "epoch-last.pth", weights_only=True)["epoch"] == 2  # written before the interruption
    assert sorted(os.listdir(save)) == sorted(list(before) + ["epoch-last.pth", "history.png"])


def test_disk_full_is_one_line_and_the_previous_checkpoint_survives(tmp_path, capsys, monkeypatch):
    save = tmp_path / "out"
    config = write(tmp_path, tiny(epoch_max=2))
    assert run_cli(capsys, config, "--save-dir", str(save), "--epochs", "1")[0] == 0
    before = (save / "epoch-last.pth").read_bytes()
    real_write = atomic.os.fdopen

    def fdopen_full(fd, *args, **kwargs):  # every file opened by atomic_write fills the disk
        f = real_write(fd, *args, **kwargs)

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                f.write(data[:10])
                raise OSError(errno.ENOSPC, "No space left on device")

        return Full()

    monkeypatch.setattr(atomic.os, "fdopen", fdopen_full)
    code, out, err = run_cli(capsys, config, "--save-dir", str(save), "--resume", str(save / "epoch-last.pth"))
    assert_one_line_error(code, err, "disk full while writing", "epoch-last.pth", "unchanged")
    assert (save / "epoch-last.pth").read_bytes() == before
    assert not [n for n in os.listdir(save) if n.endswith(".tmp")]


def test_each_checkpoint_is_serialised_once(tmp_path, monkeypatch):
    saves = []
    real_save = torch.save

    def counting_save(obj, f, *args, **kwargs):
        saves.append(type(f).__name__)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counting_save)
    config = tiny(epoch_max=1, epoch_save=1, val_dataset=tiny_liif()["val_dataset"])
    train(validate(config), str(tmp_path), log=quiet, progress=False)
    assert saves == ["BytesIO"]  # epoch-last, epoch-best and epoch-1 share one serialisation
    blobs = [(tmp_path / n).read_bytes() for n in ("epoch-last.pth", "epoch-best.pth", "epoch-1.pth")]
    assert blobs[0] == blobs[1] == blobs[2]
    assert torch.load(tmp_path / "epoch-best.pth", weights_only=True)["epoch"] == 1


# ---- resume with a new learning rate -------------------------------------------------------

def test_resume_with_a_new_lr_trains_at_the_new_lr(tmp_path):
    """lr 2e-3 halved after epoch 1. Resuming epoch 2 with optimizer.args.lr=1e-3 must train at
    1e-3 * 0.5 (the schedule kept), not the restored 2e-3 * 0.5, and say so."""
    first = tmp_path / "first"
    config = tiny(epoch_max=1, multi_step_lr={"milestones": [1], "gamma": 0.5}, optimizer={
        "name": "adam", "args": {"lr": 2e-3}})
    train(validate(config), str(first), log=quiet, progress=False)
    logs = []
    resumed = {**config, "epoch_max": 2, "resume": str(first / "epoch-last.pth"),
               "optimizer": {"name": "adam", "args": {"lr": 1e-3}}}
    history = train(validate(resumed), str(tmp_path / "second"), log=logs.append, progress=False)
    assert history[-1]["epoch"] == 2 and history[-1]["lr"] == pytest.approx(5e-4)
    assert any("optimizer.args.lr = 0.001 in the config overrides the checkpoint's 0.002" in line for line in logs)
    saved = torch.load(tmp_path / "second" / "epoch-last.pth", weights_only=True)
    assert saved["optimizer"]["sd"]["param_groups"][0]["initial_lr"] == pytest.approx(1e-3)
    assert saved["lr_scheduler"]["base_lrs"] == [pytest.approx(1e-3)]
    assert saved["fastliif"]["config"]["optimizer"]["args"]["lr"] == pytest.approx(1e-3)
    # without an override the restored state rules, as before
    logs.clear()
    same = {**resumed, "optimizer": config["optimizer"]}
    history = train(validate(same), str(tmp_path / "third"), log=logs.append, progress=False)
    assert history[-1]["lr"] == pytest.approx(1e-3) and not any("overrides" in line for line in logs)
