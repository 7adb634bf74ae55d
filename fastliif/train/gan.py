"""The SRGAN step: generator (the config's ``model``) on pixel + adversarial (+ VGG perceptual,
when the user supplies VGG19 weights) loss, then the discriminator on real vs generated.

Config section::

    gan:
      discriminator: {name: srgan-discriminator, args: {}}
      optimizer: {name: adam, args: {lr: 1.e-4}}
      vgg_weights: null            # path to a torchvision-format vgg19 state_dict, or null
      pixel: mse                   # pixel loss of the generator
      pixel_weight: 1.0
      perceptual_weight: 0.006
      adv_weight: 1.e-3
"""
import torch

from .. import models
from ..models.srgan import VGGPerceptualLoss, srgan_losses


class GanTrainer:
    def __init__(self, config, device):
        spec = config["gan"]
        self.d_spec = spec.get("discriminator") or {"name": "srgan-discriminator", "args": {}}
        self.discriminator = models.make(self.d_spec).to(device)
        self.d_net = self.discriminator
        from .loop import make_optimizer
        self.d_opt_spec = spec.get("optimizer") or config["optimizer"]
        self.d_optimizer = make_optimizer(self.discriminator.parameters(), self.d_opt_spec)
        path = spec.get("vgg_weights")
        self.perceptual = VGGPerceptualLoss(path).to(device) if path else None
        self.weights = {k: spec[k] for k in ("pixel", "pixel_weight", "perceptual_weight", "adv_weight") if k in spec}
        if self.perceptual is None:
            self.weights.pop("perceptual_weight", None)

    def wrap_ddp(self, device):
        self.d_net = torch.nn.parallel.DistributedDataParallel(
            self.discriminator, device_ids=[device.index] if device.type == "cuda" else None)

    def step(self, net, optimizer, batch, norm):
        """One generator + discriminator step; returns the generator loss and keeps the
        discriminator's in ``last_d_loss`` (the loop checks both are finite)."""
        from .tasks import forward
        sr, hr, _ = forward("image", net, batch, norm)
        g_loss, d_loss, _ = srgan_losses(sr.float(), hr, self.d_net, self.perceptual, **self.weights)
        self.last_d_loss = d_loss.detach()
        # Generator first: the discriminator step would change weights the generator's graph needs.
        optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer.step()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        return g_loss.detach()

    def state_dict(self):
        sd = {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()}
        return {"discriminator": {"name": self.d_spec["name"], "args": dict(self.d_spec.get("args") or {}), "sd": sd},
                "d_optimizer": {"name": self.d_opt_spec["name"], "args": dict(self.d_opt_spec.get("args") or {}),
                                "sd": self.d_optimizer.state_dict()}}

    def load_state_dict(self, saved, log=print):
        """Restore the discriminator and its optimizer from a GAN run's checkpoint; the config's
        discriminator optimizer args win where they differ from the checkpoint's (as the generator's)."""
        from .config import ConfigError
        from .loop import apply_optimizer_overrides
        parts = [saved.get(k) for k in ("discriminator", "d_optimizer")]
        if not all(isinstance(p, dict) and isinstance(p.get("sd"), dict) for p in parts):
            raise ConfigError("resume: the checkpoint has no discriminator / discriminator-optimizer state "
                              "(it was not saved by a GAN run)")
        self.discriminator.load_state_dict(parts[0]["sd"])
        self.d_optimizer.load_state_dict(parts[1]["sd"])
        apply_optimizer_overrides(self.d_optimizer, None, self.d_opt_spec.get("args"), parts[1].get("args"), log,
                                  section="gan.optimizer")
