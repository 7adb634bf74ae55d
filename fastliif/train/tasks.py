"""How a batch goes through each kind of model: LIIF queries, fixed-scale image models, UDVD
(image + degradation maps, several stages), all with the official ``data_norm``."""
import math

import torch


class DataNorm:
    """``(x - sub) / div`` on inputs and targets as the official ``data_norm`` config."""

    def __init__(self, spec, device):
        spec = spec or {}

        def pair(key):
            s = spec.get(key) or {}
            return (torch.tensor(s.get("sub", [0.0]), dtype=torch.float32, device=device),
                    torch.tensor(s.get("div", [1.0]), dtype=torch.float32, device=device))

        self.inp_sub, self.inp_div = pair("inp")
        self.gt_sub, self.gt_div = pair("gt")

    @staticmethod
    def _shape(t, like, channel_dim):
        shape = [1] * like.dim()
        shape[channel_dim] = -1
        return t.view(shape)

    def inp(self, x):
        return (x - self._shape(self.inp_sub, x, 1)) / self._shape(self.inp_div, x, 1)

    def gt(self, y, channel_dim):
        return (y - self._shape(self.gt_sub, y, channel_dim)) / self._shape(self.gt_div, y, channel_dim)

    def ungt(self, y, channel_dim):
        return y * self._shape(self.gt_div, y, channel_dim) + self._shape(self.gt_sub, y, channel_dim)


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def forward(task, model, batch, norm):
    """Model prediction(s) and the target, both in normalised units.

    Returns (pred, target, channel_dim): pred is a tensor or, for UDVD, the tuple of stages.
    """
    inp = norm.inp(batch["inp"])
    if task == "liif":
        return model(inp, batch["coord"], batch["cell"]), norm.gt(batch["gt"], -1), -1
    if task == "udvd":
        return model(inp, batch["kernel"], batch["noise"]), norm.gt(batch["gt"], 1), 1
    return model(inp), norm.gt(batch["gt"], 1), 1


def final(pred):
    """The last stage of a multistage prediction."""
    return pred[-1] if isinstance(pred, (tuple, list)) else pred


@torch.no_grad()
def validation_psnr(task, model, batch, norm):
    """PSNR (dB) per item over all predicted values, RGB, no shave (the official training-time
    validation: prediction de-normalised and clamped to [0, 1])."""
    pred, _, cdim = forward(task, model, batch, norm)
    pred = norm.ungt(final(pred).float(), cdim).clamp(0, 1)
    gt = batch["gt"].float()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(gt.shape)} differ")
    mse = (pred - gt).pow(2).flatten(1).mean(1)
    return torch.tensor([math.inf if m == 0 else -10 * math.log10(m) for m in mse.tolist()])
