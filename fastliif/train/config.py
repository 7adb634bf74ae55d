"""Training configs: YAML in the official LIIF layout plus a few fastliif keys.

Official keys: ``train_dataset`` / ``val_dataset`` ({dataset, wrapper, batch_size}),
``data_norm``, ``model``, ``optimizer``, ``epoch_max``, ``multi_step_lr``, ``epoch_val``,
``epoch_save``, ``resume``. fastliif adds ``task`` (liif | image | udvd | gan; inferred from
the model), ``loss``, ``seed``, ``num_workers``, ``amp``, ``backend``, ``iters_per_epoch``
(cap on steps per epoch), ``val_protocol``, ``gan`` (discriminator, its optimizer, weights).
"""
import copy

import yaml

REQUIRED = ("train_dataset", "model", "optimizer", "epoch_max")
TASKS = ("liif", "image", "udvd", "gan")

DEFAULTS = {
    "val_dataset": None, "data_norm": None, "multi_step_lr": None, "epoch_val": 1, "epoch_save": None,
    "resume": None, "task": None, "loss": {"name": "l1"}, "seed": 0, "num_workers": 0, "amp": False,
    "backend": "auto", "iters_per_epoch": None, "val_protocol": None, "gan": None,
}


def infer_task(model_name):
    if model_name.startswith("liif"):
        return "liif"
    if model_name.startswith("udvd"):
        return "udvd"
    return "image"


def parse_override(text):
    """``a.b.c=value`` (value parsed as YAML) -> (['a','b','c'], value)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_override(config, keys, value):
    node = config
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {'.'.join(keys)}: {k} is not a mapping")
    node[keys[-1]] = value


def validate(config, source="config"):
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"{source}: missing required keys {missing}")
    for k, v in DEFAULTS.items():
        config.setdefault(k, copy.deepcopy(v))
    if config["task"] is None:
        config["task"] = infer_task(config["model"]["name"])
    if config["task"] not in TASKS:
        raise ValueError(f"{source}: task must be one of {TASKS}, got {config['task']!r}")
    if config["task"] == "gan" and not config.get("gan"):
        raise ValueError(f"{source}: task 'gan' needs a 'gan' section (discriminator, optimizer)")
    if config["task"] == "gan" and config["amp"]:
        raise ValueError(f"{source}: amp is not supported for task 'gan' (the SRGAN step runs in fp32)")
    for section in ("train_dataset", "val_dataset"):
        spec = config.get(section)
        if spec is None:
            continue
        if "dataset" not in spec or "batch_size" not in spec:
            raise ValueError(f"{source}: {section} needs 'dataset' and 'batch_size'")
        if int(spec["batch_size"]) < 1:
            raise ValueError(f"{source}: {section}.batch_size must be >= 1")
    if int(config["epoch_max"]) < 1:
        raise ValueError(f"{source}: epoch_max must be >= 1")
    return config


def load_config(path, overrides=()):
    """Read a YAML config, apply ``key.sub=value`` overrides, fill defaults, validate."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    for text in overrides:
        apply_override(config, *parse_override(text))
    return validate(config, source=path)
