"""More than one process through torch.distributed: data-parallel training under `torchrun`.

Every process holds the whole model and the whole (small, compact) dataset; each takes every world_size-th batch
of one shared random order, DistributedDataParallel averages the gradients, so all replicas stay identical. Only
rank 0 writes files. Launch: `torchrun --nproc_per_node 2 -m tandem.cli train CONFIG --out DIR`.

- MIDX's codebooks are built once, on rank 0, and broadcast (`build_on_main`): every rank samples from the same
  index, whatever FAISS's threading does to k-means.
- Evaluation shards rows: each process ranks every world_size-th batch of rows and the metric sums are added
  over processes (`shard_starts`, `sum_over_processes`), so every process gets the same metrics at 1/world_size
  of the cost.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


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


def build_on_main(build: Callable[[], T]) -> T:
    """`build()` run once, on rank 0, and its result (any picklable value: arrays, tuples) sent to every process;
    just `build()` when not distributed. Every process must call it at the same point (it is a collective).

    For state every replica must hold identically and that is costly or not bit-reproducible to compute (MIDX's
    k-means codebooks: FAISS's multi-threaded k-means need not give the same centroids twice)."""
    topology = current_topology()
    if not topology.distributed:
        return build()
    payload = [build() if topology.is_main else None]
    dist.broadcast_object_list(payload, src=0)
    return payload[0]


def gather_objects(value: T, topology: Topology) -> list[T]:
    """Every process's `value` (picklable: tensors, containers), in rank order, on every process; `[value]` when
    not distributed. A collective: every process calls it at the same point (checkpoints keep each rank's own
    random generators and sampler state this way, so a resumed run under torchrun continues every rank exactly)."""
    if not topology.distributed:
        return [value]
    gathered: list[T | None] = [None] * topology.world_size
    dist.all_gather_object(gathered, value)
    return gathered  # type: ignore[return-value]


def shard_starts(rows: int, batch_size: int, topology: Topology) -> range:
    """Start offsets of this process's evaluation batches: every world_size-th batch of `rows`, from its rank."""
    return range(topology.rank * batch_size, rows, topology.world_size * batch_size)


def sum_over_processes(totals: dict[str, float], topology: Topology) -> dict[str, float]:
    """Per-name sums of every process's `totals` (names missing on a process count as 0), the same dict on all;
    `totals` itself when not distributed. Sums are added in rank order, so every process gets identical floats."""
    if not topology.distributed:
        return totals
    gathered: list[dict[str, float] | None] = [None] * topology.world_size
    dist.all_gather_object(gathered, totals)
    merged: dict[str, float] = {}
    for part in gathered:
        for name, value in (part or {}).items():
            merged[name] = merged.get(name, 0.0) + value
    return merged
