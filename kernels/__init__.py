"""Triton kernels, one file per op (installed as fastliif.kernels). Imported lazily by
fastliif.ops so that a machine without Triton or a GPU never imports them."""
