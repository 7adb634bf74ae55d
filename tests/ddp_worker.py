"""Run under torchrun by test_train_ddp.py: trains the tiny LIIF config and saves this rank's
final parameters so the test can check that DDP kept the ranks in step."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from fastliif.train import train  # noqa: E402
from fastliif.train.config import validate  # noqa: E402
from train_helpers import tiny_liif  # noqa: E402

out = sys.argv[1]
config = validate(tiny_liif(epoch_max=1, iters_per_epoch=3))
history, model = train(config, out, log=print, progress=False, return_model=True)
rank = int(os.environ["RANK"])
torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
