"""One training loop for every scheme: Adam, early stopping on a validation metric, best checkpoint, JSON lines,
and checkpoints that a killed run resumes from exactly.

Checkpoints (`checkpoint.pt` in the run directory, written atomically) are taken at the end of every epoch and,
with `train.checkpoint_every: S`, after every S-th optimiser step. Each holds everything the rest of the run
depends on: model and optimiser state, the samplers' state (MIDX index, AdaSIR pools, their generators), every
random generator (Python, NumPy, torch, the data-order generator and its state at the start of the epoch), the
early-stopping state (best value, epoch and weights, stale count), the history and the partial epoch's loss sums.
A resumed run regenerates the epoch's order from the saved generator, skips the batches already done, and on CPU
continues bit for bit as the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tandem.config import Config, EvalConfig, TrainConfig
from tandem.data.splits import Split, iterate_batches
from tandem.errors import TandemError
from tandem.sampling.base import Sampler
from tandem.training.distributed import current_topology, gather_objects, shard
from tandem.training.schemes import Scheme
from tandem.utils import atomic_torch_save, atomic_write_bytes, rng_state, set_rng_state

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2
#: Config keys that do not change what a run computes: a resume may differ in them.
RESUME_FREE_KEYS = (("train", "progress"), ("train", "checkpoint_every"), ("train", "keep_checkpoint"))
# keys added after runs were checkpointed: left out of the digest while at the value that means the old behaviour
RESUME_NEUTRAL_DEFAULTS = {("train", "sparse_embeddings"): False, ("eval", "select"): "pipeline"}
RETRIEVER_PREFIX = "retriever."  # a cooperative scheme's retriever parameters in its state dict


@dataclass
class TrainResult:
    """What a finished run knows: best validation metrics, test metrics of the best state, timings."""

    valid: dict[str, Any]
    test: dict[str, Any]
    epochs_run: int
    best_epoch: int
    seconds_per_epoch: float
    history: list[dict[str, Any]] = field(default_factory=list)
    retriever_epoch: int | None = None  # with eval.select 'stages': the epoch whose retriever was kept


@dataclass
class Progress:
    """Where a run stands: the loop position, early stopping, history. Saved in every checkpoint."""

    epoch: int = 0  # the last epoch started
    epoch_done: bool = True  # whether `epoch` is finished (logged, early stopping updated)
    batches_done: int = 0  # batches of `epoch` done
    step: int = 0  # optimiser steps so far
    stopped: bool = False  # early stopping fired or the last epoch ran: only the test evaluation is left
    best_value: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, Any] = field(default_factory=dict)
    stale: int = 0  # validations in a row where nothing selected improved
    retriever_best_value: float = -math.inf  # eval.select 'stages': the retriever's own best validation value
    retriever_best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)  # loss sums of the unfinished epoch
    elapsed: float = 0.0  # seconds spent in the unfinished epoch


def monitored_value(metrics: dict[str, Any], key: str, cooperative: bool) -> float:
    """The early-stopping value: the pipeline's metric for cooperative schemes, the retriever's otherwise."""
    return float(metrics["pipeline"][key] if cooperative else metrics[key])


def retriever_state(scheme: torch.nn.Module) -> dict[str, Any]:
    """A copy of the retriever's part of a cooperative scheme's state dict (keys keep their 'retriever.' prefix)."""
    return {key: value.detach().clone() for key, value in scheme.state_dict().items()
            if key.startswith(RETRIEVER_PREFIX)}


def plain(value: Any) -> Any:
    """`value` as JSON gives it back (NumPy numbers become Python ones): what metrics.jsonl holds, and what a
    weights-only checkpoint can store."""
    return json.loads(json.dumps(value))


def config_digest(config: Config) -> str:
    """sha256 of the config without the keys a resume may change (RESUME_FREE_KEYS)."""
    values = config.to_dict()
    for section, key in RESUME_FREE_KEYS:
        values.get(section, {}).pop(key, None)
    for (section, key), neutral in RESUME_NEUTRAL_DEFAULTS.items():
        if values.get(section, {}).get(key, neutral) == neutral:
            values.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def scheme_samplers(scheme: torch.nn.Module) -> dict[str, Sampler]:
    """Every sampler a scheme draws with (the retriever's, a ranker's own uniform sampler...), by attribute path."""
    found: dict[str, Sampler] = {}
    seen: set[int] = set()
    for prefix, module in scheme.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, Sampler) and id(value) not in seen:
                seen.add(id(value))
                found[f"{prefix}.{name}" if prefix else name] = value
    return found


@dataclass(frozen=True)
class TrainerSettings:
    """What the loop reads from a run's config: the train and eval sections, the seed of the data order, and the
    config digest a checkpoint is tied to (a resume under another config is refused)."""

    train: TrainConfig
    eval: EvalConfig
    seed: int
    digest: str

    @classmethod
    def of(cls, config: Config) -> TrainerSettings:
        return cls(config.train, config.eval, config.seed, config_digest(config))


class Trainer:
    """Runs `scheme` on `split` with `settings`; writes metrics/checkpoints under `out_dir` when given.

    `resume` is a checkpoint payload (see `checkpoint`) to continue from instead of starting afresh. `fit` is the
    loop; `_train_epoch` (batches, steps, mid-epoch checkpoints) and `_end_epoch` (validation, early stopping, the
    log line, the epoch checkpoint) are its two halves."""

    def __init__(self, settings: TrainerSettings, scheme: Scheme, split: Split, out_dir: Path | None = None,
                 resume: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.scheme = scheme
        self.split = split
        self.device = torch.device(settings.train.device)
        scheme.to(self.device)
        self.topology = current_topology()
        if settings.train.sparse_embeddings:
            if self.topology.distributed and torch.distributed.get_backend() == "nccl":
                raise TandemError("train.sparse_embeddings under torchrun needs the gloo backend (train.device: cpu): "
                                  "NCCL has no sparse all-reduce")
            scheme.use_sparse_embeddings()
        self.out_dir = out_dir if self.topology.is_main else None
        self.generator = torch.Generator().manual_seed(settings.seed)  # the same order on every process
        self.model: torch.nn.Module = scheme
        if self.topology.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(scheme, find_unused_parameters=True)
        # one Adam over everything, unless the scheme trains in phases with optimizers of its own (RankFlow)
        self.optimizers = scheme.make_optimizers(settings.train.lr, settings.train.weight_decay)
        self.resume = resume
        self.progress = Progress()
        self.best_state: dict[str, Any] = {}
        # eval.select 'stages': each model kept at its own best validation epoch (the retriever's state here)
        self.select_stages = settings.eval.select == "stages"
        if self.select_stages and not scheme.cooperative:
            raise TandemError("config key 'eval.select': 'stages' needs a cooperative scheme (a retriever and a ranker)")
        self.retriever_best: dict[str, Any] = {}
        self.epoch_generator: torch.Tensor | None = None  # data-order generator state at the current epoch's start
        self.saved_step: int | None = None  # step of the last checkpoint written by this process or resumed from

    def evaluate(self, which: str, sweep: bool = False) -> dict[str, Any]:
        """Metrics on the valid or test rows; `sweep` adds the retrieval-cutoff sweep of cooperative schemes."""
        eval_set = self.split.valid if which == "valid" else self.split.test
        return self.scheme.evaluate(
            eval_set,
            tuple(self.settings.eval.cutoffs),
            self.settings.train.eval_batch_size,
            retrieval_cutoff=self.settings.eval.retrieval_cutoff,
            device=self.device,
            cutoff_sweep=tuple(self.settings.eval.cutoff_sweep) if sweep else (),
            calibrate=which == "valid",  # validation picks what is tuned on it (fusion weight, ranker lift)
            monitor=self.settings.eval.monitor,
        )

    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as stream:
                stream.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------------------------ checkpoints
    def process_state(self) -> dict[str, Any]:
        """What differs between the processes of a torchrun: the samplers (each rank draws with its own seed, AdaSIR
        pools see the rank's own batches) and the global random generators (dropout)."""
        return {
            "samplers": {name: sampler.state_dict() for name, sampler in scheme_samplers(self.scheme).items()},
            "rng": rng_state(),
        }

    def checkpoint(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The payload of a checkpoint at this point of the loop (tensors and plain containers only). Under
        torchrun `ranks` holds every process's `process_state`, in rank order; rank 0's is also the top level."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": self.settings.digest,
            "world_size": self.topology.world_size,
            "model": self.scheme.state_dict(),
            "optimizer": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            **(ranks[self.topology.rank] if ranks is not None else self.process_state()),
            "generator": self.generator.get_state(),
            "epoch_generator": self.epoch_generator,
            "progress": asdict(self.progress),
            "best_state": self.best_state,
            "retriever_best": self.retriever_best,
        }
        if ranks is not None and self.topology.distributed:
            payload["ranks"] = ranks
        return payload

    def _save_checkpoint(self, elapsed: float = 0.0) -> None:
        self.progress.elapsed = elapsed
        ranks = gather_objects(self.process_state(), self.topology) if self.topology.distributed else None
        if self.out_dir is not None:
            atomic_torch_save(self.out_dir / CHECKPOINT, self.checkpoint(ranks))
        self.saved_step = self.progress.step

    def _restore(self, payload: dict[str, Any]) -> None:
        """Load a checkpoint payload into the scheme, optimiser, samplers and generators; rewrite metrics.jsonl and
        best.pt as they were when it was taken (dropping what a killed run wrote after it)."""
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise TandemError(f"checkpoint format {payload.get('format')!r} is not {CHECKPOINT_FORMAT}: "
                              f"written by another tandem version")
        if payload.get("config") != self.settings.digest:
            raise TandemError("the checkpoint was written for a different config than the run's config.yaml")
        saved_world = int(payload.get("world_size", 1))
        if saved_world != self.topology.world_size:
            raise TandemError(f"the checkpoint was written by {saved_world} process(es) and this run has "
                              f"{self.topology.world_size}: resume it with {saved_world} "
                              f"(torchrun --nproc_per_node {saved_world})" if saved_world > 1 else
                              f"the checkpoint was written by one process: resume it without torchrun")
        local = payload["ranks"][self.topology.rank] if self.topology.distributed else payload
        try:
            self.scheme.load_state_dict(payload["model"])
            if set(payload["optimizer"]) != set(self.optimizers):
                raise ValueError(f"optimizers {sorted(payload['optimizer'])} saved, {sorted(self.optimizers)} built")
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(payload["optimizer"][name])
            samplers = scheme_samplers(self.scheme)
            if set(samplers) != set(local["samplers"]):
                raise ValueError(f"samplers {sorted(local['samplers'])} saved, {sorted(samplers)} built")
            for name, sampler in samplers.items():
                sampler.load_state_dict(local["samplers"][name], self.device)
            self.progress = Progress(**payload["progress"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            text = " ".join(str(error).split())
            raise TandemError(f"the checkpoint does not match this run: {text[:300]}") from None
        self.best_state = payload["best_state"]
        self.retriever_best = payload.get("retriever_best", {})
        self.generator.set_state(payload["generator"])
        self.epoch_generator = payload["epoch_generator"]
        self.saved_step = self.progress.step
        if self.out_dir is not None:
            lines = "".join(json.dumps(record) + "\n" for record in self.progress.history)
            atomic_write_bytes(self.out_dir / "metrics.jsonl", lines.encode())
            best = self.out_dir / "best.pt"
            if self.progress.best_epoch > 0:
                atomic_torch_save(best, {"state": self.best_state, "epoch": self.progress.best_epoch})
            elif best.exists():
                best.unlink()
        set_rng_state(local["rng"])  # last: nothing above may draw from the restored generators

    def _diverged(self, losses: dict[str, torch.Tensor], epoch: int) -> TandemError:
        values = ", ".join(f"{name}={float(value.detach()):.4g}" for name, value in losses.items())
        where = f"epoch {epoch}, step {self.progress.step + 1}"
        if self.out_dir is not None and self.saved_step is not None:
            kept = f"{self.out_dir / CHECKPOINT} keeps the last good state (step {self.saved_step})"
        else:
            kept = "no checkpoint had been written yet"
        return TandemError(f"training diverged: non-finite loss ({values}) at {where}; {kept}; lower train.lr")

    # --------------------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train to early stopping (or the last epoch), then evaluate the best state on the test rows."""
        if self.resume is not None:
            self._restore(self.resume)
            self.resume = None
        else:
            self.best_state = copy.deepcopy(self.scheme.state_dict())
            self.retriever_best = retriever_state(self.scheme) if self.select_stages else {}
        p = self.progress
        first = p.epoch if not p.epoch_done else p.epoch + 1
        for epoch in range(first, self.settings.train.epochs + 1):
            if p.stopped:
                break
            continuing = not p.epoch_done and epoch == p.epoch
            started = time.perf_counter() - (p.elapsed if continuing else 0.0)
            self._train_epoch(epoch, continuing, started)
            self._end_epoch(epoch, started)
            if p.stopped:
                break
        self.scheme.load_state_dict(self.best_state)
        if self.select_stages:
            self._combine_stages()
        test = self.evaluate("test", sweep=True)
        return TrainResult(
            valid=p.best_valid,
            test=test,
            epochs_run=p.epoch,
            best_epoch=p.best_epoch,
            seconds_per_epoch=sum(p.epoch_seconds) / max(1, len(p.epoch_seconds)),
            history=p.history,
            retriever_epoch=p.retriever_best_epoch if self.select_stages else None,
        )

    def _combine_stages(self) -> None:
        """eval.select 'stages': put the retriever of its own best validation epoch under the ranker of the best
        pipeline epoch, validate that pair (which also re-chooses the fusion weight and the ranker's lift on it),
        and keep it as the run's best state (best.pt) and validation figures. The pair's validation goes into
        metrics.jsonl as a 'selected' line (not in the history: a resume rewrites the file and appends it again)."""
        p = self.progress
        self.scheme.load_state_dict({**self.best_state, **self.retriever_best})
        p.best_valid = plain(self.evaluate("valid"))
        self.best_state = copy.deepcopy(self.scheme.state_dict())
        self._log({"selected": {"retriever_epoch": p.retriever_best_epoch, "ranker_epoch": p.best_epoch,
                                "validation": p.best_valid}})
        if self.out_dir is not None:
            atomic_torch_save(self.out_dir / "best.pt", {"state": self.best_state, "epoch": p.best_epoch,
                                                         "retriever_epoch": p.retriever_best_epoch})

    def _steps_per_epoch(self) -> int:
        steps = math.ceil(len(self.split.train) / self.settings.train.batch_size)
        return steps // self.topology.world_size if self.topology.distributed else steps

    def _train_epoch(self, epoch: int, continuing: bool, started: float) -> None:
        """The epoch's batches (the rest of them, when `continuing` a resumed epoch): one optimiser step each."""
        cfg, p, train = self.settings.train, self.progress, self.split.train
        self.scheme.train()
        if continuing:  # the epoch's order again from its start state; its first batches are done
            self.generator.set_state(self.epoch_generator)
            skip = p.batches_done
        else:
            p.epoch, p.epoch_done, p.batches_done, p.totals = epoch, False, 0, {}
            self.scheme.on_epoch_start(train)
            self.epoch_generator = self.generator.get_state()
            skip = 0
        batches = shard(
            iterate_batches(train.tensors, cfg.batch_size, shuffle=True, generator=self.generator), self.topology
        )
        bar = tqdm(
            itertools.islice(batches, skip, None), total=self._steps_per_epoch(), initial=skip,
            desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
            # a live bar on a terminal only: redrawn into a log file it floods it (one line per epoch below)
            disable=not cfg.progress or not self.topology.is_main or not sys.stderr.isatty(),
            file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
        )
        for batch in bar:
            losses = self._step({key: value.to(self.device, non_blocking=True) for key, value in batch.items()},
                                epoch)
            bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()})
            if cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0:
                self._save_checkpoint(time.perf_counter() - started)

    def _step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        """One optimiser step on `batch`; a non-finite loss stops the run before any weight moves."""
        p = self.progress
        self.scheme.train()
        losses = self.model(batch)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise self._diverged(losses, epoch)
        active = [self.optimizers[name] for name in self.scheme.active_optimizers(epoch)]
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        for optimizer in active:
            optimizer.step()
        p.step += 1
        p.batches_done += 1
        self.scheme.on_step(p.step, self.split.train)
        values = {name: float(value.detach()) for name, value in losses.items()}
        for name, value in values.items():
            p.totals[name] = p.totals.get(name, 0.0) + value
        return values

    def _end_epoch(self, epoch: int, started: float) -> None:
        """Log the epoch's mean losses, validate (every `eval_every` epochs), update early stopping and the best
        state, write the epoch line and the checkpoint."""
        cfg, p, monitor = self.settings.train, self.progress, self.settings.eval.monitor
        p.epoch_seconds.append(time.perf_counter() - started)
        record: dict[str, Any] = {
            "epoch": epoch,
            "seconds": round(p.epoch_seconds[-1], 3),
            "loss": {name: value / self._steps_per_epoch() for name, value in p.totals.items()},
        }
        valid_text = ""
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = plain(self.evaluate("valid"))
            record["valid"] = valid
            value = monitored_value(valid, monitor, self.scheme.cooperative)
            valid_text = f", valid {monitor} {value:.4f}"
            improved = value > p.best_value
            if improved:
                p.best_value, p.best_epoch, p.best_valid = value, epoch, valid
                self.best_state = copy.deepcopy(self.scheme.state_dict())
                if self.out_dir is not None:
                    atomic_torch_save(self.out_dir / "best.pt", {"state": self.best_state, "epoch": epoch})
            if self.select_stages:  # the retriever on its own metric; stop only when neither improves
                own = float(valid["retriever"][monitor])
                valid_text += f", retriever {own:.4f}"
                if own > p.retriever_best_value:
                    p.retriever_best_value, p.retriever_best_epoch = own, epoch
                    self.retriever_best = retriever_state(self.scheme)
                    improved = True
            p.stale = 0 if improved else p.stale + 1
        if cfg.progress and self.topology.is_main:  # one line per epoch, on a terminal or in a log
            loss_text = " ".join(f"{name} {mean:.4f}" for name, mean in record["loss"].items())
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: loss {loss_text}{valid_text} ({record['seconds']:.1f} s)",
                       file=sys.stderr)
        p.history.append(record)
        self._log(record)
        p.epoch_done, p.totals = True, {}
        p.stopped = p.stale >= cfg.patience or epoch == cfg.epochs
        self._save_checkpoint()
