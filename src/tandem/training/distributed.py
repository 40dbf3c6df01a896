"""More than one process through torch.distributed: data-parallel training under `torchrun`.

Every process holds the whole model and the whole (small, compact) dataset; each takes every world_size-th batch
of one shared random order, DistributedDataParallel averages the gradients, so all replicas stay identical. Only
rank 0 writes files. Launch: `torchrun --nproc_per_node 2 -m tandem.cli train CONFIG --out DIR`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Topology:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_environment(device: str = "cpu") -> Topology:
    """Join the process group that `torchrun` describes in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Topology()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Topology(dist.get_rank(), dist.get_world_size())


def current_topology() -> Topology:
    if dist.is_available() and dist.is_initialized():
        return Topology(dist.get_rank(), dist.get_world_size())
    return Topology()


def shard(batches, topology: Topology):
    """This process's share of a batch stream: every world_size-th batch, starting at its rank.

    The stream is cut to a multiple of world_size so every process takes the same number of steps (DDP needs the
    collective calls to line up).
    """
    if not topology.distributed:
        yield from batches
        return
    group: list = []
    for batch in batches:
        group.append(batch)
        if len(group) == topology.world_size:
            yield group[topology.rank]
            group = []
