"""The training loop: Adam (or any torch.optim by name), MultiStepLR, L1/Charbonnier/multistage
losses, validation PSNR every ``epoch_val`` epochs, checkpoints in the official LIIF format
(``epoch-last.pth`` each epoch, ``epoch-best.pth``, ``epoch-N.pth`` every ``epoch_save``), resume,
AMP, DDP under torchrun, tqdm progress, a history JSON and plot."""
import contextlib
import io
import math
import os
import tempfile
import time
import types

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .. import atomic
from .. import data as datasets
from .. import models
from ..checkpoint import read_checkpoint, state_dict_mismatch
from . import ddp
from .config import BACKENDS, OPTIMIZERS, ConfigError
from .init import apply_init
from .losses import make_loss
from .tasks import DataNorm, forward, to_device, validation_psnr

CHECK_EVERY = 10  # steps between loss read-backs (finite check, progress bar)


def make_loader(spec, rank, world_size, shuffle, num_workers):
    dataset = datasets.make(spec["dataset"])
    if spec.get("wrapper"):
        dataset = datasets.make(spec["wrapper"], args={"dataset": dataset})
    if len(dataset) == 0:
        raise ValueError(f"dataset {spec['dataset']} is empty")
    sampler = DistributedSampler(dataset, world_size, rank, shuffle=shuffle) if world_size > 1 else None
    return DataLoader(dataset, batch_size=int(spec["batch_size"]), shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      drop_last=shuffle, persistent_workers=num_workers > 0)


def build_model(spec, backend):
    """The fused model for ``spec`` (its ``-reference`` twin when backend='reference'); the same
    state_dict keys either way, so checkpoints always name the fused model."""
    name = spec["name"]
    if backend == "reference":
        ref = f"{name}-reference"
        name = ref if ref in models.names() else name
    model = models.make({"name": name, "args": spec.get("args") or {}})
    if backend not in ("auto", "reference") and hasattr(model, "backend"):
        model.backend = backend
    return model


def make_optimizer(params, spec, state=None):
    name = spec["name"].lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {spec['name']!r}; choose from {sorted(OPTIMIZERS)}")
    opt = OPTIMIZERS[name](params, **(spec.get("args") or {}))
    if state is not None:
        opt.load_state_dict(state)
    return opt


def _amp_dtype(device):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast_for(device, enabled):
    """The autocast context of one step (bf16, or fp16 on GPUs without bf16)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_amp_dtype(device))


def grad_scaler(device, enabled):
    """A GradScaler for the whole run when AMP runs in fp16 (its scale adapts across steps)."""
    if enabled and device.type == "cuda" and _amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def save_history_plot(history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(epochs, [h["loss"] for h in history], marker=".")
    ax[0].set(xlabel="epoch", ylabel="train loss", yscale="log")
    val = [(h["epoch"], h["val_psnr"]) for h in history if h.get("val_psnr") is not None]
    if val:
        ax[1].plot(*zip(*val), marker=".", color="C1")
    ax[1].set(xlabel="epoch", ylabel="val PSNR (dB)")
    fig.tight_layout()
    try:
        atomic.save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)


def validate(task, model, loader, norm, device, amp):
    model.eval()
    values = []
    with torch.no_grad(), autocast_for(device, amp):
        for batch in loader:
            values.append(validation_psnr(task, model, to_device(batch, device), norm))
    model.train()
    values = torch.cat(values)
    return float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else math.inf


def train(config, save_dir, *, device=None, log=print, progress=True, return_model=False):
    """Train as ``config`` says, writing checkpoints and logs to ``save_dir``. Returns the history
    (one dict per epoch: loss, val_psnr, lr, seconds), and the trained model if ``return_model``."""
    device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world_size, device = ddp.setup(device_type)
    main = rank == 0
    try:
        history, model = _train(config, save_dir, device, rank, world_size, main,
                                log if main else (lambda *a: None), progress and main)
        return (history, model) if return_model else history
    finally:
        ddp.cleanup()


def check_save_dir(save_dir):
    """Create ``save_dir`` and make sure a file can be written there, before any training."""
    try:
        os.makedirs(save_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=save_dir):
            pass
    except OSError as exc:
        raise ConfigError(f"save dir {save_dir}: cannot write there ({exc.strerror or exc})") from None


def read_resume(path):
    """The checkpoint to resume from, checked to hold what resuming needs (one-line ConfigErrors)."""
    try:
        saved = read_checkpoint(path, map_location="cpu")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"resume: {exc}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict) or "sd" not in saved["model"]:
        raise ConfigError(f"resume: {path} is not a training checkpoint (no {{'model': {{'sd': ...}}}})")
    opt = saved.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("sd"), dict):
        raise ConfigError(f"resume: {path} has no optimizer state (a model-only checkpoint cannot resume a run; "
                          "start a new run instead)")
    if not isinstance(saved.get("epoch"), int):
        raise ConfigError(f"resume: {path} does not say which epoch it was saved at")
    return saved


def load_init_from(model, path, log):
    """Start ``model`` from the weights of checkpoint ``path`` (``init_from``: fine-tuning).

    Only ``model.sd`` is read, in any stored dtype (a shipped fp16 file starts an fp32 run); every
    key and shape must match the configured model, so a fine-tune cannot silently start half-fresh.
    Optimizer state, epoch and history start anew. ``resume`` (when also set) overrides these
    weights with the resumed run's, so a stopped fine-tune continues exactly.
    """
    try:
        saved = read_checkpoint(path, map_location="cpu")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"init_from: {exc}") from None
    sd = saved["model"].get("sd") if isinstance(saved, dict) and isinstance(saved.get("model"), dict) else None
    if not isinstance(sd, dict):
        raise ConfigError(f"init_from: {path} is not a model checkpoint (no {{'model': {{'sd': ...}}}})")
    own = model.state_dict()
    missing, extra, shapes = state_dict_mismatch(own, sd)
    if missing or extra or shapes:
        first = [f"{label} {keys[:3]}" for label, keys in
                 (("missing", missing), ("unexpected", extra), ("other shape:", shapes)) if keys][0]
        raise ConfigError(f"init_from: {path} does not fit the configured model ({first}; "
                          f"{len(missing)} missing, {len(extra)} unexpected, {len(shapes)} of other shape)")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(sd[k])
    log(f"init_from: model weights from {path}")


def apply_optimizer_overrides(optimizer, scheduler, config_args, saved_args, log, section="optimizer"):
    """Optimizer args the config sets differently from the run being resumed win over the restored
    state (the config is saved with every checkpoint, so it must say what actually trains). ``lr``
    is the base rate: the schedule's decay so far is kept on top of it."""
    for name, value in (config_args or {}).items():
        old = (saved_args or {}).get(name)
        if old == value or not all(name in g for g in optimizer.param_groups):
            continue
        for group in optimizer.param_groups:
            if name == "lr":
                base = group.get("initial_lr", group["lr"])
                group["lr"] = value * (group["lr"] / base) if base else value
                if "initial_lr" in group:
                    group["initial_lr"] = value
            else:
                group[name] = value
        if name == "lr" and scheduler is not None:
            scheduler.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        now = f" (now {optimizer.param_groups[0]['lr']:.3g} with the schedule)" if name == "lr" else ""
        log(f"resume: {section}.args.{name} = {value} in the config overrides the checkpoint's {old}{now}")


def _train(config, save_dir, device, rank, world_size, main, log, progress):
    task, backend = config["task"], config["backend"]
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    torch.manual_seed(int(config["seed"]))
    if main:
        check_save_dir(save_dir)
    try:
        run = _setup(config, device, rank, world_size, main, log)
    except (KeyError, TypeError, ValueError) as exc:  # names and args: the config checked most already
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{type(exc).__name__}: {exc}" if isinstance(exc, TypeError) else str(exc)) from None
    return _loop(config, save_dir, device, rank, world_size, main, log, progress, run)


def _setup(config, device, rank, world_size, main, log):
    task, backend = config["task"], config["backend"]
    saved = read_resume(config["resume"]) if config.get("resume") else None  # a bad file stops us first
    model = build_model(config["model"], backend)
    if config.get("init", "default") != "default":
        if task != "liif":
            raise ConfigError(f"init: {config['init']} is for LIIF models, not task {task}")
        if config.get("init_from"):
            raise ConfigError(f"init: {config['init']} and init_from: set one of them (init_from "
                              "replaces every weight)")
        apply_init(model, config["init"])
    if config.get("init_from"):
        load_init_from(model, config["init_from"], log)
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {config['model']['name']} ({type(model).__module__}.{type(model).__name__}): "
        f"{n_params:,} parameters; backend {backend}; device {device}; world size {world_size}")
    optimizer = make_optimizer(model.parameters(), config["optimizer"])
    step_impl = None
    if task == "gan":
        from .gan import GanTrainer
        step_impl = GanTrainer(config, device)
    milestones = config.get("multi_step_lr")
    scheduler = (torch.optim.lr_scheduler.MultiStepLR(optimizer, **milestones) if milestones else None)
    epoch_start, history, best = 1, [], -math.inf

    if saved is not None:
        path = config["resume"]
        try:
            model.load_state_dict(saved["model"]["sd"])
            optimizer.load_state_dict(saved["optimizer"]["sd"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"resume: {path} does not fit the configured model/optimizer: "
                              f"{' '.join(str(exc).split())[:400]}") from None
        if scheduler is not None and saved.get("lr_scheduler") is not None:
            scheduler.load_state_dict(saved["lr_scheduler"])
        apply_optimizer_overrides(optimizer, scheduler, config["optimizer"].get("args"),
                                  saved["optimizer"].get("args"), log)
        epoch_start = int(saved["epoch"]) + 1
        extra = saved.get("fastliif") or {}
        history, best = list(extra.get("history") or []), float(extra.get("best", -math.inf))
        if task == "gan":
            step_impl.load_state_dict(saved, log)
        log(f"resumed from {path} at epoch {epoch_start}")

    train_loader = make_loader(config["train_dataset"], rank, world_size, True, int(config["num_workers"]))
    val_loader = (make_loader(config["val_dataset"], 0, 1, False, 0)
                  if config.get("val_dataset") and main else None)
    norm = DataNorm(config["data_norm"], device)
    loss_fn = make_loss(config["loss"])
    return types.SimpleNamespace(model=model, optimizer=optimizer, scheduler=scheduler, step_impl=step_impl,
                                 epoch_start=epoch_start, history=history, best=best, train_loader=train_loader,
                                 val_loader=val_loader, norm=norm, loss_fn=loss_fn)


def _loop(config, save_dir, device, rank, world_size, main, log, progress, run):
    task = config["task"]
    model, optimizer, scheduler, step_impl = run.model, run.optimizer, run.scheduler, run.step_impl
    epoch_start, history, best = run.epoch_start, run.history, run.best
    train_loader, val_loader, norm, loss_fn = run.train_loader, run.val_loader, run.norm, run.loss_fn
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        if task == "gan":
            step_impl.wrap_ddp(device)
    amp = bool(config["amp"])
    scaler = grad_scaler(device, amp)
    cap = config.get("iters_per_epoch")
    steps_per_epoch = len(train_loader) if cap is None else min(len(train_loader), int(cap))

    for epoch in range(epoch_start, int(config["epoch_max"]) + 1):
        t0 = time.perf_counter()
        # Data randomness from (seed, rank, epoch) alone: a resumed run draws what an uninterrupted
        # one would, and ranks differ. The model init came from the shared seed above.
        torch.manual_seed(int(config["seed"]) * 1_000_003 + rank * 10_007 + epoch)
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        net.train()
        total, count = torch.zeros((), device=device), 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config['epoch_max']}", leave=False,
                   disable=not progress, dynamic_ncols=True)
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            batch = to_device(batch, device)
            if task == "gan":
                loss = step_impl.step(net, optimizer, batch, norm)
            else:
                with autocast_for(device, amp):
                    pred, target, _ = forward(task, net, batch, norm)
                    if isinstance(pred, (tuple, list)):
                        loss = loss_fn([p.float() for p in pred], target)
                    else:
                        loss = loss_fn(pred.float(), target)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            total += loss.detach()
            count += 1
            # Read the loss back (a host-device sync) every CHECK_EVERY steps only: to catch a
            # diverged run and to show it on the bar.
            if i % CHECK_EVERY == 0 or i == steps_per_epoch - 1:
                watched = loss.detach() if task != "gan" else torch.stack([loss, step_impl.last_d_loss])
                if not torch.isfinite(watched).all():
                    raise FloatingPointError(f"loss is {watched.tolist()} at epoch {epoch}, step {i} or the "
                                             f"{CHECK_EVERY - 1} before; lower the learning rate or check the data")
                if progress:
                    bar.set_postfix(loss=f"{float(watched.flatten()[0]):.4f}")
            bar.update(1)
        bar.close()
        if world_size > 1:
            torch.distributed.all_reduce(total)
            total /= world_size
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        entry = {"epoch": epoch, "loss": float(total) / max(count, 1), "lr": lr, "val_psnr": None}
        if val_loader is not None and (epoch % int(config["epoch_val"]) == 0 or epoch == config["epoch_max"]):
            entry["val_psnr"] = validate(task, model, val_loader, norm, device, amp)
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        if main:
            if entry["val_psnr"] is not None and entry["val_psnr"] > best:
                best = entry["val_psnr"]
            _save(config, model, optimizer, scheduler, epoch, history, best, save_dir,
                  is_best=entry["val_psnr"] is not None and entry["val_psnr"] >= best,
                  extra=step_impl.state_dict() if task == "gan" else {})
            val = "" if entry["val_psnr"] is None else f", val PSNR {entry['val_psnr']:.3f} dB"
            log(f"epoch {epoch}: loss {entry['loss']:.5f}{val}, lr {lr:.2e}, {entry['seconds']:.1f} s")
        ddp.barrier()
    return history, model


def _save(config, model, optimizer, scheduler, epoch, history, best, save_dir, is_best, extra):
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {
        "model": {"name": config["model"]["name"], "args": dict(config["model"].get("args") or {}), "sd": sd},
        "optimizer": {"name": config["optimizer"]["name"], "args": dict(config["optimizer"].get("args") or {}),
                      "sd": optimizer.state_dict()},
        "epoch": epoch,
        "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
        "fastliif": {"history": history, "best": best, "config": config},
        **extra,
    }
    # Serialise once; each file is then written atomically (temporary file, fsync, rename), so an
    # interruption or a full disk leaves every previous checkpoint whole.
    buf = io.BytesIO()
    torch.save(blob, buf)
    data = buf.getbuffer()
    names = ["epoch-last.pth"] + (["epoch-best.pth"] if is_best else [])
    if config.get("epoch_save") and epoch % int(config["epoch_save"]) == 0:
        names.append(f"epoch-{epoch}.pth")
    for name in names:
        with atomic.atomic_write(os.path.join(save_dir, name)) as f:
            f.write(data)
    atomic.write_json(os.path.join(save_dir, "history.json"), history)
    save_history_plot(history, os.path.join(save_dir, "history.png"))
