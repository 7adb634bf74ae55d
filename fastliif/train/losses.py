"""Pixel losses: L1 (LIIF, EDSR), Charbonnier (smooth L1 variant), multistage (UDVD: one term
per output stage)."""
import torch
import torch.nn as nn


class CharbonnierLoss(nn.Module):
    """mean(sqrt((x - y)^2 + eps^2)): L1-like, smooth at 0."""

    def __init__(self, eps=1e-3):
        super().__init__()
        if eps <= 0:
            raise ValueError(f"Charbonnier eps must be > 0, got {eps}")
        self.eps = float(eps)

    def forward(self, pred, target):
        return torch.sqrt((pred - target) ** 2 + self.eps ** 2).mean()


class MultistageLoss(nn.Module):
    """Weighted sum of a base loss over the stages a model returns (UDVD: three x2 outputs,
    each compared with the HR target)."""

    def __init__(self, base="l1", weights=None, **base_args):
        super().__init__()
        if base == "multistage":
            raise ValueError("multistage loss cannot nest itself")
        self.base = make_loss({"name": base, "args": base_args})
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, preds, target):
        if isinstance(preds, torch.Tensor):
            preds = (preds,)
        weights = self.weights or [1.0] * len(preds)
        if len(weights) != len(preds):
            raise ValueError(f"multistage loss has {len(weights)} weights for {len(preds)} stages")
        return sum(w * self.base(p, target) for w, p in zip(weights, preds))


LOSSES = {"l1": nn.L1Loss, "l2": nn.MSELoss, "charbonnier": CharbonnierLoss, "multistage": MultistageLoss}


def make_loss(spec):
    """``{'name': 'l1'|'l2'|'charbonnier'|'multistage', 'args': {...}}`` (or a name)."""
    spec = {"name": spec, "args": {}} if isinstance(spec, str) else dict(spec or {"name": "l1"})
    name, args = spec.get("name", "l1"), dict(spec.get("args") or {})
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name](**args)
