"""Whole training steps (data batch already made; forward, loss, backward, Adam step) with the fused
model vs its ``-reference`` twin, through the trainer's own pieces (fastliif.train)."""
import torch

from fastliif import data
from fastliif.train.loop import build_model, make_optimizer
from fastliif.train.losses import make_loss
from fastliif.train.tasks import DataNorm, forward, to_device

BACKENDS = ("auto", "reference")

CASES = {
    # the official LIIF recipe (EDSR-baseline encoder, 256x4 MLP), batch 4 of 48x48, 2304 queries
    "liif_edsr_b4": {
        "title": "LIIF-EDSR-baseline step, B=4, 48x48 LR, sample_q 2304",
        "task": "liif",
        "dataset": {"name": "sample-images", "args": {"names": ["astronaut", "coffee", "rocket", "hubble_deep_field"]}},
        "wrapper": {"name": "sr-implicit-downsampled",
                    "args": {"inp_size": 48, "scale_max": 4, "augment": True, "sample_q": 2304, "resize": "torch"}},
        "batch": 4,
        "model": {"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
                                           "imnet_spec": {"name": "mlp", "args": {"out_dim": 3,
                                                                                  "hidden_list": [256] * 4}}}},
        "loss": {"name": "l1"},
        "norm": {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}},
    },
    # UDVD x2, batch 4 of 48x48 LR with online SRMD degradations (made once, outside the timing)
    "udvd_b4": {
        "title": "UDVD x2 step, B=4, 48x48 LR, multistage L1",
        "task": "udvd",
        "dataset": {"name": "sample-images", "args": {"names": ["astronaut", "coffee", "rocket", "hubble_deep_field"]}},
        "wrapper": {"name": "udvd-online", "args": {"scale": 2, "patch_size": 96, "seed": 0}},
        "batch": 4,
        "model": {"name": "udvd"},
        "loss": {"name": "multistage", "args": {"base": "l1"}},
        "norm": None,
    },
}


class TrainCase:
    def __init__(self, name):
        spec = CASES[name]
        self.name, self.title, self.task = name, spec["title"], spec["task"]
        torch.manual_seed(0)
        ds = data.make(spec["wrapper"], args={"dataset": data.make(spec["dataset"])})
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        batch = torch.utils.data.default_collate([ds[i % len(ds)] for i in range(spec["batch"])])
        self.batch = to_device(batch, self.device)
        self.spec = spec
        self.norm = DataNorm(spec["norm"], self.device)
        self.loss_fn = make_loss(spec["loss"])

    def step_fn(self, backend):
        torch.manual_seed(0)
        model = build_model(self.spec["model"], backend).to(self.device)
        opt = make_optimizer(model.parameters(), {"name": "adam", "args": {"lr": 1e-4}})

        def step():
            pred, target, _ = forward(self.task, model, self.batch, self.norm)
            loss = self.loss_fn(list(pred) if isinstance(pred, tuple) else pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.device.type == "cuda":  # time the GPU work, not the launch
                torch.cuda.synchronize()
            return loss

        return step

