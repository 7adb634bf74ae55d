"""Training configs: YAML in the official LIIF layout plus a few fastliif keys.

Official keys: ``train_dataset`` / ``val_dataset`` ({dataset, wrapper, batch_size}),
``data_norm``, ``model``, ``optimizer``, ``epoch_max``, ``multi_step_lr``, ``epoch_val``,
``epoch_save``, ``resume``. fastliif adds ``task`` (liif | image | udvd | gan; inferred from
the model), ``loss``, ``seed``, ``num_workers``, ``amp``, ``backend``, ``iters_per_epoch``
(cap on steps per epoch), ``val_protocol``, ``gan`` (discriminator, its optimizer, weights), ``init`` (``bilinear``:
a LIIF starts as bilinear interpolation, see :mod:`fastliif.train.init`), ``init_from`` (a
checkpoint whose model weights a new run starts from: fine-tuning; its optimizer, epoch and
history are not used, unlike ``resume``).

Every key is checked before any work: an unknown key (at any level with a known layout) names
the nearest valid one, values are type- and range-checked, registered names and constructor
arguments are looked up. Every problem is a one-line :class:`ConfigError` naming the key.
"""
import copy

import torch
import yaml

from .._registry import check_kwargs, did_you_mean

REQUIRED = ("train_dataset", "model", "optimizer", "epoch_max")
TASKS = ("liif", "image", "udvd", "gan")
BACKENDS = ("auto", "cpu", "torch", "triton", "cuda", "reference")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
NUMERIC_OPTIMIZER_ARGS = ("lr", "weight_decay", "eps", "momentum", "dampening")

DEFAULTS = {
    "val_dataset": None, "data_norm": None, "multi_step_lr": None, "epoch_val": 1, "epoch_save": None,
    "resume": None, "task": None, "loss": {"name": "l1"}, "seed": 0, "num_workers": 0, "amp": False,
    "backend": "auto", "iters_per_epoch": None, "val_protocol": None, "gan": None, "init": "default",
    "init_from": None,
}


class ConfigError(ValueError):
    """A bad config (or training setup): one line naming the key and the problem."""


def infer_task(model_name):
    if model_name.startswith("liif"):
        return "liif"
    if model_name.startswith("udvd"):
        return "udvd"
    return "image"


# ---- value checkers: each takes (value, key) and raises ConfigError ---------------------------

def _type_name(value):
    return "null" if value is None else type(value).__name__


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo=None, optional=False):
    def check(value, key):
        if value is None and optional:
            return
        if not _is_int(value):
            raise ConfigError(f"{key} must be an integer, got {value!r} ({_type_name(value)})")
        if lo is not None and value < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {value}")
    return check


def number(lo=None, positive=False, optional=False):
    def check(value, key):
        if value is None and optional:
            return
        if not _is_number(value):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(value, str) else ""
            raise ConfigError(f"{key} must be a number, got {value!r} ({_type_name(value)}){hint}")
        if positive and not value > 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
        if lo is not None and value < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {value}")
    return check


def boolean(value, key):
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def text(choices=None, optional=False):
    def check(value, key):
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r} ({_type_name(value)})")
        if choices is not None and value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}")
    return check


def number_list(value, key):
    if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
        raise ConfigError(f"{key} must be a non-empty list of numbers, got {value!r}")


def milestone_list(value, key):
    if not isinstance(value, list) or not all(_is_int(v) and v >= 1 for v in value):
        raise ConfigError(f"{key} must be a list of epochs (integers >= 1), got {value!r}")


def section(fields, required=(), optional=False, extra=None):
    """A mapping with known keys ``fields`` ({key: checker}); ``extra(value, key)`` runs after."""
    def check(value, key):
        if value is None and optional:
            return
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r} ({_type_name(value)})")
        _check_mapping(value, fields, required, key)
        if extra is not None:
            extra(value, key)
    return check


def _check_mapping(value, fields, required, prefix):
    def path(k):
        return f"{prefix}.{k}" if prefix else str(k)
    for k in value:
        if k not in fields:
            raise ConfigError(f"unknown key {path(k)!r}{did_you_mean(k, fields)} (valid here: {', '.join(fields)})")
    for k in required:
        if k not in value:
            raise ConfigError(f"missing required key {path(k)!r}")
    for k, v in value.items():
        fields[k](v, path(k))


def _args_mapping(value, key):
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of constructor arguments, got {value!r}")


def _registered(registry_name, injected=()):
    """Checks a ``{name, args}`` spec against a registry (``fastliif.models`` / ``fastliif.data``):
    the name is registered, the args are ones the constructor takes; nested ``*_spec`` args
    (LIIF's encoder_spec / imnet_spec) are model specs and are checked the same way."""
    def extra(spec, key):
        if registry_name == "model":
            from ..models import check
        else:
            from ..data.registry import check
        try:
            check(spec, args=dict.fromkeys(injected), where=f"{key}.args: {registry_name} {spec['name']!r}")
        except KeyError as exc:  # an unknown name
            raise ConfigError(f"{key}.name: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        for k, v in (spec.get("args") or {}).items():
            if k.endswith("_spec") and isinstance(v, dict):
                model_spec(v, f"{key}.args.{k}")
    return section({"name": text(), "args": _args_mapping}, required=("name",), extra=extra)


def model_spec(value, key):
    _registered("model")(value, key)


def _optimizer_extra(spec, key):
    name = spec["name"].lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"{key}.name: unknown optimizer {spec['name']!r}{did_you_mean(name, OPTIMIZERS)}; "
                          f"choose from {', '.join(sorted(OPTIMIZERS))}")
    args = spec.get("args") or {}
    try:
        check_kwargs(OPTIMIZERS[name], args, f"{key}.args: optimizer {name!r}")
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    for k in NUMERIC_OPTIMIZER_ARGS:
        if k in args:
            number(lo=0)(args[k], f"{key}.args.{k}")


optimizer_spec = section({"name": text(), "args": _args_mapping}, required=("name",), extra=_optimizer_extra)


def _loss_extra(spec, key):
    from .losses import LOSSES
    name = spec["name"]
    if name not in LOSSES:
        raise ConfigError(f"{key}.name: unknown loss {name!r}{did_you_mean(name, LOSSES)}; "
                          f"choose from {', '.join(LOSSES)}")
    try:
        check_kwargs(LOSSES[name], spec.get("args") or {}, f"{key}.args: loss {name!r}")
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


loss_spec = section({"name": text(), "args": _args_mapping}, required=("name",), extra=_loss_extra)

DATASET_SECTION = {
    "dataset": _registered("dataset"),
    "wrapper": lambda v, k: None if v is None else _registered("dataset", injected=("dataset",))(v, k),
    "batch_size": integer(lo=1),
}
_NORM = section({"sub": number_list, "div": number_list})
GAN_SECTION = {
    "discriminator": model_spec, "optimizer": optimizer_spec, "vgg_weights": text(optional=True),
    "pixel": text(choices=("mse", "l1")), "pixel_weight": number(lo=0),
    "perceptual_weight": number(lo=0), "adv_weight": number(lo=0),
}

SCHEMA = {
    "train_dataset": section(DATASET_SECTION, required=("dataset", "batch_size")),
    "val_dataset": section(DATASET_SECTION, required=("dataset", "batch_size"), optional=True),
    "data_norm": section({"inp": _NORM, "gt": _NORM}, optional=True),
    "model": model_spec,
    "optimizer": optimizer_spec,
    "epoch_max": integer(lo=1),
    "multi_step_lr": section({"milestones": milestone_list, "gamma": number(positive=True)},
                             required=("milestones",), optional=True),
    "epoch_val": integer(lo=1),
    "epoch_save": integer(lo=1, optional=True),
    "resume": text(optional=True),
    "task": text(choices=TASKS, optional=True),
    "loss": loss_spec,
    "seed": integer(lo=0),
    "num_workers": integer(lo=0),
    "amp": boolean,
    "backend": text(choices=BACKENDS),
    "iters_per_epoch": integer(lo=1, optional=True),
    "val_protocol": text(optional=True),
    "gan": section(GAN_SECTION, optional=True),
    "init": text(choices=("default", "bilinear")),
    "init_from": text(optional=True),
}


def parse_override(text_):
    """``a.b.c=value`` (value parsed as YAML) -> (['a','b','c'], value)."""
    if "=" not in text_:
        raise ConfigError(f"--set {text_!r} must look like key.sub=value")
    key, value = text_.split("=", 1)
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {text_!r}: empty key")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text_!r}: the value is not valid YAML ({' '.join(str(exc).split())})") from None
    if isinstance(parsed, str):  # YAML 1.1 reads 1e-4 (no dot) as text; on a command line it means the number
        try:
            parsed = float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf", "infinity") else parsed
        except ValueError:
            pass
    return keys, parsed


def apply_override(config, keys, value):
    node = config
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {k} is not a mapping")
    node[keys[-1]] = value


def validate(config, source="config"):
    """Fill the defaults and check every key and value; raises ConfigError("SOURCE: ...")."""
    try:
        if not isinstance(config, dict):
            raise ConfigError("a config must be a mapping")
        for k in config:
            if k not in SCHEMA:
                raise ConfigError(f"unknown key {k!r}{did_you_mean(k, SCHEMA)}")
        missing = [k for k in REQUIRED if k not in config]
        if missing:
            raise ConfigError(f"missing required keys {missing}")
        for k, v in DEFAULTS.items():
            if config.get(k) is None:
                config[k] = copy.deepcopy(v)
        _check_mapping(config, SCHEMA, REQUIRED, "")
        if config["task"] is None:
            config["task"] = infer_task(config["model"]["name"])
        if config["task"] == "gan" and not config.get("gan"):
            raise ConfigError("task 'gan' needs a 'gan' section (discriminator, optimizer)")
        if config["task"] == "gan" and config["amp"]:
            raise ConfigError("amp is not supported for task 'gan' (the SRGAN step runs in fp32)")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def load_config(path, overrides=()):
    """Read a YAML config, apply ``key.sub=value`` overrides, fill defaults, validate."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    for text_ in overrides:
        apply_override(config, *parse_override(text_))
    return validate(config, source=path)
