"""DistributedDataParallel on CPU: two gloo processes launched by torchrun.

The ranks are kept off any GPU (CUDA_VISIBLE_DEVICES=""): on a one-GPU machine the trainer would
otherwise put both ranks on CUDA and ask for cuda:1. A GPU/NCCL variant needs two GPUs.
"""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _torchrun(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # gloo on CPU on any machine
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_ddp_two_cpu_processes_stay_in_step(tmp_path):
    proc = _torchrun(os.path.join(HERE, "ddp_worker.py"), str(tmp_path), cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    # Ranks drew different data but all-reduced gradients: identical weights after each step.
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    from fastliif.checkpoint import load_checkpoint
    model = load_checkpoint(str(tmp_path / "epoch-last.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, r0[k]), k


def test_ddp_from_the_cli(tmp_path):
    import yaml
    sys.path.insert(0, HERE)
    from train_helpers import tiny_liif
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_liif(epoch_max=1, iters_per_epoch=2)))
    proc = _torchrun("-m", "fastliif", "train", str(cfg), "--save-dir", str(tmp_path / "out"), "--quiet",
                     cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout and (tmp_path / "out" / "epoch-last.pth").exists()
