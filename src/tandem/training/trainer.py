"""One training loop for every scheme: Adam, early stopping on a validation metric, best checkpoint, JSON lines."""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tandem.config import Config
from tandem.data.splits import Split, iterate_batches
from tandem.training.distributed import current_topology, shard
from tandem.training.schemes import Scheme
from tandem.utils import atomic_torch_save


@dataclass
class TrainResult:
    """What a finished run knows: best validation metrics, test metrics of the best state, timings."""

    valid: dict[str, Any]
    test: dict[str, Any]
    epochs_run: int
    best_epoch: int
    seconds_per_epoch: float
    history: list[dict[str, Any]] = field(default_factory=list)


def monitored_value(metrics: dict[str, Any], key: str, cooperative: bool) -> float:
    """The early-stopping value: the pipeline's metric for cooperative schemes, the retriever's otherwise."""
    return float(metrics["pipeline"][key] if cooperative else metrics[key])


class Trainer:
    """Runs `scheme` on `split` as configured; writes metrics/checkpoints under `out_dir` when given."""

    def __init__(self, config: Config, scheme: Scheme, split: Split, out_dir: Path | None = None) -> None:
        self.config = config
        self.scheme = scheme
        self.split = split
        self.device = torch.device(config.train.device)
        scheme.to(self.device)
        self.topology = current_topology()
        self.out_dir = out_dir if self.topology.is_main else None
        self.generator = torch.Generator().manual_seed(config.seed)  # the same order on every process
        self.model: torch.nn.Module = scheme
        if self.topology.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(scheme, find_unused_parameters=True)
        parameters = [p for p in scheme.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(parameters, lr=config.train.lr, weight_decay=config.train.weight_decay)

    def evaluate(self, which: str, sweep: bool = False) -> dict[str, Any]:
        """Metrics on the valid or test rows; `sweep` adds the retrieval-cutoff sweep of cooperative schemes."""
        eval_set = self.split.valid if which == "valid" else self.split.test
        return self.scheme.evaluate(
            eval_set,
            tuple(self.config.eval.cutoffs),
            self.config.train.eval_batch_size,
            retrieval_cutoff=self.config.eval.retrieval_cutoff,
            device=self.device,
            cutoff_sweep=tuple(self.config.eval.cutoff_sweep) if sweep else (),
            calibrate=which == "valid",  # validation picks what is tuned on it (fusion weight, ranker lift)
            monitor=self.config.eval.monitor,
        )

    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as stream:
                stream.write(json.dumps(record) + "\n")

    def fit(self) -> TrainResult:
        cfg = self.config.train
        monitor = self.config.eval.monitor
        train = self.split.train
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        if self.topology.distributed:
            steps_per_epoch //= self.topology.world_size
        best_value, best_epoch, best_state = -math.inf, 0, copy.deepcopy(self.scheme.state_dict())
        best_valid: dict[str, Any] = {}
        epoch_seconds: list[float] = []
        history: list[dict[str, Any]] = []
        stale, step, epoch = 0, 0, 0
        for epoch in range(1, cfg.epochs + 1):
            started = time.perf_counter()
            self.scheme.train()
            self.scheme.on_epoch_start(train)
            totals: dict[str, float] = {}
            batches = shard(
                iterate_batches(train.tensors, cfg.batch_size, shuffle=True, generator=self.generator), self.topology
            )
            bar = tqdm(
                batches, total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                # a live bar on a terminal only: redrawn into a log file it floods it (one line per epoch below)
                disable=not cfg.progress or not self.topology.is_main or not sys.stderr.isatty(),
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
            )
            for batch in bar:
                batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
                self.scheme.train()
                losses = self.model(batch)
                total = sum(losses.values())
                if not torch.isfinite(total):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}: {losses}")
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                self.optimizer.step()
                step += 1
                self.scheme.on_step(step, train)
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach())
                bar.set_postfix({name: f"{value.item():.3f}" for name, value in losses.items()})
            epoch_seconds.append(time.perf_counter() - started)
            record: dict[str, Any] = {
                "epoch": epoch,
                "seconds": round(epoch_seconds[-1], 3),
                "loss": {name: value / steps_per_epoch for name, value in totals.items()},
            }
            if epoch % self.config.train.eval_every == 0 or epoch == cfg.epochs:
                valid = self.evaluate("valid")
                record["valid"] = valid
                value = monitored_value(valid, monitor, self.scheme.cooperative)
                if value > best_value:
                    best_value, best_epoch, best_valid = value, epoch, valid
                    best_state = copy.deepcopy(self.scheme.state_dict())
                    stale = 0
                    if self.out_dir is not None:
                        atomic_torch_save(self.out_dir / "best.pt", {"state": best_state, "epoch": epoch})
                else:
                    stale += 1
            if cfg.progress and self.topology.is_main:  # one line per epoch, on a terminal or in a log
                loss_text = " ".join(f"{name} {mean:.4f}" for name, mean in record["loss"].items())
                valid_text = f", valid {monitor} {value:.4f}" if "valid" in record else ""
                tqdm.write(f"epoch {epoch}/{cfg.epochs}: loss {loss_text}{valid_text} ({record['seconds']:.1f} s)",
                           file=sys.stderr)
            history.append(record)
            self._log(record)
            if stale >= cfg.patience:
                break
        self.scheme.load_state_dict(best_state)
        test = self.evaluate("test", sweep=True)
        return TrainResult(
            valid=best_valid,
            test=test,
            epochs_run=epoch,
            best_epoch=best_epoch,
            seconds_per_epoch=sum(epoch_seconds) / max(1, len(epoch_seconds)),
            history=history,
        )
