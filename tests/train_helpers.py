"""Tiny training configs for the trainer tests (seconds on one CPU core)."""
import copy

TINY_LIIF = {
    "train_dataset": {
        "dataset": {"name": "sample-images", "args": {"names": ["astronaut", "coffee"], "repeat": 8}},
        "wrapper": {"name": "sr-implicit-downsampled",
                    "args": {"inp_size": 12, "scale_min": 1, "scale_max": 3, "augment": True, "sample_q": 64,
                             "resize": "torch"}},
        "batch_size": 4,
    },
    "val_dataset": {
        "dataset": {"name": "sample-images", "args": {"names": ["chelsea"], "repeat": 2}},
        "wrapper": {"name": "sr-implicit-downsampled",
                    "args": {"inp_size": 12, "scale_min": 2, "scale_max": 2, "sample_q": 64, "resize": "torch"}},
        "batch_size": 2,
    },
    "data_norm": {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}},
    "model": {"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}}},
    "optimizer": {"name": "adam", "args": {"lr": 2e-3}},
    "epoch_max": 2,
    "multi_step_lr": {"milestones": [1], "gamma": 0.5},
    "epoch_val": 1,
    "epoch_save": 1,
    "seed": 3,
}


def tiny_liif(**changes):
    config = copy.deepcopy(TINY_LIIF)
    config.update(changes)
    return config
