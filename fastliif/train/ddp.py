"""Distributed data parallel through ``torchrun`` (env:// rendezvous): NCCL on GPUs, gloo on CPU."""
import os

import torch
import torch.distributed as dist


def world():
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0"))


def setup(device_type):
    """Join the process group when launched by torchrun; returns (rank, world_size, device)."""
    rank, size, local_rank = world()
    if device_type == "cuda":
        device = torch.device("cuda", local_rank if size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_type)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return rank, size, device


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
