"""A synthetic recommendation world of any size (10k to 1M+ items, up to ~10M interactions), vectorised.

Structure, all drawn from one seed:
- **popularity**: item i has weight rank_i ** -alpha (a random Zipf rank per item), so counts fall as a power law;
- **tastes**: items are spread over C clusters; each user starts in a cluster (its `segment`, a user feature; the
  cluster is the item feature `category`) and draws items of its current cluster by popularity;
- **drift**: at each step the user's cluster moves to a neighbouring one (c +- 1 mod C) with probability `drift`;
- **planted signal**: every item has a fixed successor in its own cluster (drawn by popularity); with probability
  `follow` the next item is the successor of the previous one. Only a model that reads the history (or is told
  the order) can find it: shuffling a user's items keeps every count and removes it.

Sequence generation is one pass of array operations over all positions (the successor chains are resolved by
repeated gathers, as many rounds as the longest chain), never a loop over users or items.
`write_parquet` / `write_atomic` write the files users bring (`data.format: table` / `atomic`), atomically.

    python -m tandem.data.synthetic_scale --items 100000 --interactions 1000000 --out data/syn100k --format parquet
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from tandem.data.raw import RawDataset
from tandem.errors import TandemError


@dataclass(frozen=True)
class WorldSpec:
    """Sizes and knobs of a synthetic world; `num_users` defaults to interactions / mean_length."""

    num_items: int
    num_interactions: int
    mean_length: float = 20.0
    min_length: int = 5
    popularity_exponent: float = 0.8
    num_clusters: int | None = None  # default: about sqrt(N) / 2, at least 2
    drift: float = 0.05
    follow: float = 0.3
    seed: int = 0

    @property
    def num_users(self) -> int:
        return max(1, int(round(self.num_interactions / self.mean_length)))

    @property
    def clusters(self) -> int:
        if self.num_clusters is not None:
            return int(self.num_clusters)
        return int(min(self.num_items, max(2, round(math.sqrt(self.num_items) / 2))))

    def check(self) -> None:
        """One TandemError naming the first bad value."""
        if self.num_items < 2:
            raise TandemError(f"items must be >= 2, got {self.num_items}")
        if self.num_interactions < self.min_length:
            raise TandemError(f"interactions must be >= min_length ({self.min_length}), got {self.num_interactions}")
        if not self.mean_length >= self.min_length >= 1:
            raise TandemError(f"need mean_length >= min_length >= 1, got {self.mean_length} and {self.min_length}")
        if not 2 <= self.clusters <= self.num_items:
            raise TandemError(f"clusters must be in [2, items], got {self.clusters}")
        for name in ("drift", "follow"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise TandemError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= self.popularity_exponent <= 3.0:
            raise TandemError(f"popularity exponent must be in [0, 3], got {self.popularity_exponent}")


@dataclass
class World:
    """A generated world: interactions as a CSR by user (time order) plus the latent truth, for checks."""

    spec: WorldSpec
    indptr: np.ndarray  # [U + 1]
    items: np.ndarray  # [nnz] item ids 1..N, time-ordered within a user
    timestamps: np.ndarray  # [nnz] seconds
    followed: np.ndarray  # [nnz] bool: this position is the planted successor of the previous item
    item_weight: np.ndarray  # [N + 1] popularity weight rank ** -alpha (entry 0 unused)
    item_cluster: np.ndarray  # [N + 1] category of each item (entry 0 unused)
    successor: np.ndarray  # [N + 1] planted successor of each item
    user_segment: np.ndarray  # [U] each user's starting cluster

    @property
    def num_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def users(self) -> np.ndarray:
        """The user of every position, [nnz]."""
        return np.repeat(np.arange(self.num_users), np.diff(self.indptr))

    def raw(self) -> RawDataset:
        """The interactions and features as a reader would return them (integer tokens)."""
        users = np.arange(self.num_users)
        items = np.arange(1, self.item_cluster.shape[0])
        return RawDataset(
            f"synthetic-{self.spec.num_items}",
            pd.DataFrame({"user": self.users(), "item": self.items, "timestamp": self.timestamps}),
            pd.DataFrame({"user": users, "segment": self.user_segment}),
            pd.DataFrame({"item": items, "category": self.item_cluster[1:]}),
            {"segment": "categorical"},
            {"category": "categorical"},
        )


def _lengths(spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
    """Per-user sequence lengths: min_length + a log-normal tail (sigma 1) with the requested mean."""
    extra_mean = spec.mean_length - spec.min_length
    sigma = 1.0
    raw = rng.lognormal(mean=math.log(max(extra_mean, 1e-9)) - sigma**2 / 2, sigma=sigma, size=spec.num_users)
    return spec.min_length + np.floor(raw).astype(np.int64)


def _segment_cumsum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at every user (values at each user's first position are included)."""
    total = np.cumsum(values)
    starts = indptr[:-1]
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0)
    return total - np.repeat(before, np.diff(indptr))


def generate(spec: WorldSpec) -> World:
    """Draw a world (see the module docstring); identical for identical specs."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    n, clusters = spec.num_items, spec.clusters
    # items: Zipf weights on a random rank order, spread evenly over the clusters in a random order
    weight = np.zeros(n + 1)
    weight[1:] = rng.permutation(np.arange(1, n + 1, dtype=np.float64)) ** -spec.popularity_exponent
    cluster = np.zeros(n + 1, dtype=np.int64)
    cluster[1:] = rng.permutation(n) % clusters
    by_cluster = np.argsort(cluster[1:], kind="stable") + 1  # item ids grouped by cluster
    cum = np.cumsum(weight[by_cluster])
    bounds = np.searchsorted(cluster[by_cluster], np.arange(clusters + 1))  # cluster c: by_cluster[b[c]:b[c+1]]
    base = np.concatenate([[0.0], cum])[bounds[:-1]]
    mass = cum[bounds[1:] - 1] - base

    def draw(in_cluster: np.ndarray) -> np.ndarray:
        """One item per entry, from its cluster by popularity (inverse CDF over the grouped cumulative weights)."""
        target = base[in_cluster] + rng.random(in_cluster.shape[0]) * mass[in_cluster]
        slot = np.searchsorted(cum, target, side="right")
        return by_cluster[np.clip(slot, bounds[in_cluster], bounds[in_cluster + 1] - 1)]

    successor = np.zeros(n + 1, dtype=np.int64)
    successor[1:] = draw(cluster[1:])
    # users: lengths, starting clusters, drifting cluster walks
    lengths = _lengths(spec, rng)
    indptr = np.zeros(spec.num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    nnz = int(indptr[-1])
    first = np.zeros(nnz, dtype=bool)
    first[indptr[:-1]] = True
    segment = rng.integers(0, clusters, size=spec.num_users)
    step = np.where(rng.random(nnz) < spec.drift, rng.choice(np.array([-1, 1]), size=nnz), 0)
    step[first] = 0
    state = (np.repeat(segment, lengths) + _segment_cumsum(step, indptr)) % clusters
    # fresh draws from the current cluster, or the planted successor of the previous item
    followed = (rng.random(nnz) < spec.follow) & ~first
    position = np.arange(nnz)
    last_fresh = np.maximum.accumulate(np.where(followed, 0, position))
    items = draw(state)[last_fresh]
    hops = position - last_fresh  # successor steps from the chain's fresh item
    for hop in range(1, int(hops.max(initial=0)) + 1):
        chained = np.flatnonzero(hops >= hop)
        items[chained] = successor[items[chained]]
    gaps = rng.exponential(3600.0, size=nnz)
    gaps[first] = 0.0
    start = rng.uniform(0.0, 1e8, size=spec.num_users)
    timestamps = np.repeat(start, lengths) + _segment_cumsum(gaps, indptr)
    return World(spec, indptr, items, np.round(timestamps, 3), followed, weight, cluster, successor, segment)


# ------------------------------------------------------------------------------------------------ writing


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it after the block succeeds (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_parquet(world: World, directory: str | os.PathLike[str], name: str = "interactions") -> Path:
    """`{directory}/{name}.parquet` with columns user, item, timestamp (read with `data.format: table`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(directory) / f"{name}.parquet"
    table = pa.table({"user": world.users(), "item": world.items, "timestamp": world.timestamps})
    with _atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return path


def write_atomic(world: World, directory: str | os.PathLike[str], name: str = "synthetic") -> Path:
    """RecBole atomic files `{name}.inter`, `.user` (segment) and `.item` (category) in `directory` (read with
    `data.format: atomic`). Returns the directory."""
    directory = Path(directory)
    raw = world.raw()
    files = {
        "inter": raw.interactions.rename(columns={"user": "user_id:token", "item": "item_id:token",
                                                  "timestamp": "timestamp:float"}),
        "user": raw.user_features.rename(columns={"user": "user_id:token", "segment": "segment:token"}),
        "item": raw.item_features.rename(columns={"item": "item_id:token", "category": "category:token"}),
    }
    for suffix, frame in files.items():
        with _atomic_path(directory / f"{name}.{suffix}") as temporary:
            frame.to_csv(temporary, sep="\t", index=False)
    return directory


# ------------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    """Generate a world and write it; bad options give one line and exit status 2."""
    from tandem.cli import Parser  # argparse with one-line errors, exit status 2

    parser = Parser(prog="python -m tandem.data.synthetic_scale", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--out", required=True, help="directory to write")
    parser.add_argument("--format", choices=("parquet", "atomic"), default="parquet")
    parser.add_argument("--name", help="file stem (default: interactions for parquet, synthetic for atomic)")
    parser.add_argument("--mean-length", type=float, default=20.0)
    parser.add_argument("--popularity-exponent", type=float, default=0.8)
    parser.add_argument("--clusters", type=int)
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--follow", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = WorldSpec(args.items, args.interactions, mean_length=args.mean_length,
                     popularity_exponent=args.popularity_exponent, num_clusters=args.clusters, drift=args.drift,
                     follow=args.follow, seed=args.seed)
    try:
        world = generate(spec)
        if args.format == "parquet":
            path = write_parquet(world, args.out, args.name or "interactions")
        else:
            path = write_atomic(world, args.out, args.name or "synthetic")
    except TandemError as error:
        print(f"synthetic_scale: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"synthetic_scale: error: {error.strerror or error}: {error.filename or args.out}", file=sys.stderr)
        return 2
    print(f"{path}: {world.num_users} users, {spec.num_items} items, {world.items.shape[0]} interactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
