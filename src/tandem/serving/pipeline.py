"""The retrieve-then-rank serving pipeline of a trained run.

`Recommender.from_run(run_dir)` rebuilds the run from its directory alone (config, the stored vocabulary that maps
raw tokens to ids, interactions and feature tables, the scheme with the best checkpoint; see `tandem.rundir`), so
an edited or relabelled data file cannot change what a user id gets; it indexes the retriever's item vectors with
FAISS and answers `recommend(...)`:

1. context: a known user (general and sequential task) and/or, for the sequential task, a history of raw item
   tokens; a known user's history is the last `data.max_seq_len` items of everything it interacted with;
2. retrieval: the top `retrieval_cutoff` items (config `eval.retrieval_cutoff`, raised to k when k is larger) by
   inner product, known items excluded (the user's interactions and the given history);
3. re-ranking (cooperative schemes): the candidates re-ordered by `scheme.rerank_scores` (the ranker's score, or
   ICC's joint score), ties keeping the retrieval order, exactly as the two-stage evaluation does; for a
   retriever-only run whose model has a full score beyond its indexed part (NeuMF, `has_full_score`), by that;
4. the top k, with raw item tokens and both scores.

All contexts of one call go through the models together, in chunks of `train.eval_batch_size`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tandem.data.splits import histories as history_windows
from tandem.errors import TandemError
from tandem.serving.index import ExcludeCSR, ItemIndex

Batch = dict[str, torch.Tensor]


def uses_users(module: nn.Module | None) -> bool:
    """Whether a model reads `batch["user"]`, as its `inputs` say."""
    return module is not None and "user" in module.inputs


def _quoted(tokens: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(str(token)) for token in list(tokens)[:limit])
    return shown + (f" and {len(tokens) - limit} more" if len(tokens) > limit else "")


@dataclass
class Query:
    """A checked request as ids: users [B] and/or histories (B arrays), k, and the candidate count it needs.

    Queries with equal `key` can share one model call: same kind of context, same exclusion, same cutoff."""

    user_ids: np.ndarray | None
    history_ids: list[np.ndarray] | None
    k: int
    exclude_known: bool
    cutoff: int

    @property
    def rows(self) -> int:
        return len(self.user_ids) if self.user_ids is not None else len(self.history_ids or ())

    @property
    def key(self) -> tuple[bool, bool, bool, int]:
        return (self.user_ids is not None, self.history_ids is not None, self.exclude_known, self.cutoff)


def _ranges_csr(items: np.ndarray, begin: np.ndarray, end: np.ndarray) -> ExcludeCSR:
    """Rows items[begin_r:end_r] gathered into one CSR."""
    lengths = end - begin
    indptr = np.zeros(len(begin) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.repeat(begin - indptr[:-1], lengths) + np.arange(indptr[-1])
    return ExcludeCSR(indptr, items[flat])


class Recommender:
    """A trained run as a recommender: FAISS retrieval of candidates, re-ranking, raw tokens in and out.

    `exact=False` uses an IVF index (`nlist`, `nprobe`, see `ItemIndex`) instead of exact inner-product search;
    `index_factory` any FAISS index by its factory string (with `nprobe` / `ef_search`).
    """

    def __init__(self, config: Any, data: Any, scheme: nn.Module, retrieval_cutoff: int | None = None,
                 exact: bool = True, nlist: int | None = None, nprobe: int | None = None,
                 batch_size: int | None = None, index_factory: str | None = None,
                 ef_search: int | None = None) -> None:
        self.config = config
        self.data = data
        self.scheme = scheme.eval()
        self.task = config.task
        self.max_seq_len = int(config.data.max_seq_len)
        self.retrieval_cutoff = int(retrieval_cutoff if retrieval_cutoff is not None else config.eval.retrieval_cutoff)
        if self.retrieval_cutoff < 1:
            raise TandemError(f"retrieval_cutoff must be >= 1, got {self.retrieval_cutoff}")
        if retrieval_cutoff is not None and retrieval_cutoff > data.num_items:
            raise TandemError(f"retrieval cutoff {retrieval_cutoff} is larger than the catalogue "
                              f"({data.num_items} items); use at most {data.num_items}")
        self.batch_size = int(batch_size or config.train.eval_batch_size)
        self.cooperative = bool(getattr(scheme, "cooperative", False))
        # a retriever-only run whose model scores more than its indexed part (NeuMF) re-scores its candidates
        self.rescores = not self.cooperative and bool(getattr(scheme.retriever, "has_full_score", False))
        self.needs_user = uses_users(scheme.retriever) or (self.cooperative and uses_users(scheme.ranker))
        self.user_ids = {str(token): index for index, token in enumerate(data.user_tokens)}
        self.item_ids = {str(token): index for index, token in enumerate(data.item_tokens) if index > 0}
        self.item_names = np.array([str(token) for token in data.item_tokens], dtype=object)
        with torch.no_grad():
            vectors = scheme.retriever.item_vectors().detach().float().cpu().numpy()
        try:
            self.index = ItemIndex(vectors, exact=exact, nlist=nlist, nprobe=nprobe, seed=int(config.seed),
                                   factory=index_factory, ef_search=ef_search)
        except ValueError as error:
            raise TandemError(f"cannot build the item index: {error}") from None

    @classmethod
    def from_run(cls, run_dir: str | Path, retrieval_cutoff: int | None = None, exact: bool = True,
                 nlist: int | None = None, nprobe: int | None = None, index_factory: str | None = None,
                 ef_search: int | None = None) -> "Recommender":
        """Load the finished run `run_dir` (written by `tandem train`; an unfinished one is refused) with its best
        checkpoint and its stored vocabulary, and index its items."""
        from tandem.run import load_run

        config, prepared, scheme = load_run(run_dir)
        return cls(config, prepared.data, scheme, retrieval_cutoff, exact, nlist, nprobe,
                   index_factory=index_factory, ef_search=ef_search)

    @property
    def num_items(self) -> int:
        return self.index.num_items

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def info(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "scheme": self.config.scheme.get("name"),
            "retriever": self.config.retriever.get("name"),
            "ranker": (self.config.ranker or {}).get("name") if self.cooperative else None,
            "users": self.num_users,
            "items": self.num_items,
            "retrieval_cutoff": self.retrieval_cutoff,
            "rescored_by": "ranker" if self.cooperative else "full_score" if self.rescores else None,
            "index": self.index.describe(),
        }

    # ------------------------------------------------------------------ raw tokens -> ids

    def user_ids_of(self, users: Sequence[Any]) -> np.ndarray:
        unknown = [user for user in users if str(user) not in self.user_ids]
        if unknown:
            raise TandemError(f"unknown user(s): {_quoted(unknown)}")
        return np.array([self.user_ids[str(user)] for user in users], dtype=np.int64)

    def item_ids_of(self, items: Sequence[Any]) -> np.ndarray:
        unknown = [item for item in items if str(item) not in self.item_ids]
        if unknown:
            raise TandemError(f"unknown item(s): {_quoted(unknown)}")
        return np.array([self.item_ids[str(item)] for item in items], dtype=np.int64)

    # ------------------------------------------------------------------ the pipeline

    def recommend(self, users: Sequence[str] | None = None, histories: Sequence[Sequence[str]] | None = None,
                  k: int = 10, exclude_known: bool = True) -> list[list[dict[str, Any]]]:
        """Top-k recommendations per context: `[{"item": token, "score": s, "retriever_score": m}, ...]`.

        Give `users` (raw user tokens), or `histories` (lists of raw item tokens, sequential task only), or both
        (same length: the history replaces the user's own sequence, the user still identifies it). `score` is the
        re-ranking score (the retriever's own for a retriever-only run). A row has fewer than k entries only when
        fewer than k items are left after exclusion.
        """
        return self.run([self.parse(users, histories, k, exclude_known)])[0]

    def parse(self, users: Sequence[str] | None = None, histories: Sequence[Sequence[str]] | None = None,
              k: int = 10, exclude_known: bool = True) -> "Query":
        """Check a request and turn its raw tokens into ids (no model call); bad input is a TandemError."""
        if isinstance(users, str):
            users = [users]
        if users is None and histories is None:
            raise TandemError("recommend needs users or histories")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise TandemError(f"k must be a positive integer, got {k!r}")
        if k > self.num_items:
            raise TandemError(f"k = {k} is more than the catalogue's {self.num_items} items")
        user_ids = self.user_ids_of(list(users)) if users is not None else None
        history_ids = None
        if histories is not None:
            if self.task != "sequential":
                raise TandemError("histories are for the sequential task; this run is a general-task run: give users")
            if isinstance(histories, str) or any(isinstance(history, str) for history in histories):
                raise TandemError("histories must be a list of item-token lists, one list per context")
            histories = [list(history) for history in histories]
            if user_ids is not None and len(histories) != len(user_ids):
                raise TandemError(f"got {len(user_ids)} users but {len(histories)} histories; give one per user")
            for row, history in enumerate(histories):
                if not history:
                    raise TandemError(f"history {row} is empty; give at least one item")
            unknown = [item for history in histories for item in history if str(item) not in self.item_ids]
            if unknown:
                raise TandemError(f"unknown item(s): {_quoted(list(dict.fromkeys(unknown)))}")
            history_ids = [self.item_ids_of(history) for history in histories]
            if user_ids is None and self.needs_user:
                raise TandemError("this run's models use the user id or user features: give a known user with the history")
        cutoff = min(self.num_items, max(self.retrieval_cutoff, int(k)))
        return Query(user_ids, history_ids, int(k), bool(exclude_known), cutoff)

    def run(self, queries: Sequence["Query"]) -> list[list[list[dict[str, Any]]]]:
        """Answer parsed queries, one list of rows per query. Queries with the same `key` go through the models
        together (in chunks of `batch_size` rows), others one key after another; each row's answer is the one it
        gets alone, up to batched float arithmetic."""
        answers: list[list[list[dict[str, Any]]] | None] = [None] * len(queries)
        groups: dict[tuple, list[int]] = {}
        for position, query in enumerate(queries):
            groups.setdefault(query.key, []).append(position)
        for positions in groups.values():
            group = [queries[position] for position in positions]
            k = max(query.k for query in group)
            user_ids = (np.concatenate([query.user_ids for query in group])
                        if group[0].user_ids is not None else None)
            history_ids = ([history for query in group for history in query.history_ids]
                           if group[0].history_ids is not None else None)
            rows = sum(query.rows for query in group)
            flat: list[list[dict[str, Any]]] = []
            for begin in range(0, rows, self.batch_size):
                window = slice(begin, min(rows, begin + self.batch_size))
                items, scores, retriever_scores = self.recommend_ids(
                    user_ids[window] if user_ids is not None else None,
                    history_ids[window] if history_ids is not None else None,
                    k, group[0].exclude_known,
                )
                names = self.item_names
                for row_items, row_scores, row_retriever in zip(items.tolist(), scores.tolist(),
                                                                retriever_scores.tolist()):
                    flat.append([
                        {"item": names[item], "score": score, "retriever_score": retrieved}
                        for item, score, retrieved in zip(row_items, row_scores, row_retriever)
                        if item > 0
                    ])
            begin = 0
            for position, query in zip(positions, group):
                answers[position] = [row[:query.k] for row in flat[begin:begin + query.rows]]
                begin += query.rows
        return answers  # type: ignore[return-value]

    def batch(self, user_ids: np.ndarray | None, history_ids: Sequence[np.ndarray] | None) -> Batch:
        """The models' batch: `user` [B] and, for the sequential task, `history` [B, max_seq_len] (left-padded)."""
        rows = len(user_ids) if user_ids is not None else len(history_ids)
        users = user_ids if user_ids is not None else np.zeros(rows, dtype=np.int64)  # unused by the models
        batch = {"user": torch.as_tensor(users, dtype=torch.long)}
        if self.task == "sequential":
            width = self.max_seq_len
            if history_ids is None:
                ends = self.data.indptr[users + 1]
                windows = history_windows(self.data.items, self.data.indptr[users], ends, width)
            else:
                windows = np.zeros((rows, width), dtype=np.int64)
                for row, history in enumerate(history_ids):
                    tail = history[-width:]
                    windows[row, width - len(tail):] = tail
            batch["history"] = torch.as_tensor(windows, dtype=torch.long)
        return batch

    def known(self, user_ids: np.ndarray | None, history_ids: Sequence[np.ndarray] | None,
              rows: int) -> ExcludeCSR | list[np.ndarray]:
        """Items to exclude per row: the user's interactions and the given history."""
        if user_ids is not None:
            user_known = _ranges_csr(self.data.items, self.data.indptr[user_ids], self.data.indptr[user_ids + 1])
            if history_ids is None:
                return user_known
            return [np.concatenate([user_known.items[user_known.indptr[r]:user_known.indptr[r + 1]], history_ids[r]])
                    for r in range(rows)]
        return list(history_ids)

    @torch.inference_mode()
    def recommend_ids(self, user_ids: np.ndarray | None, history_ids: Sequence[np.ndarray] | None, k: int,
                      exclude_known: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item ids [B, k] (0 = none left), final scores [B, k] and retriever scores [B, k], best first."""
        batch = self.batch(user_ids, history_ids)
        rows = batch["user"].shape[0]
        exclude = self.known(user_ids, history_ids, rows) if exclude_known else None
        cutoff = min(self.num_items, max(self.retrieval_cutoff, k))
        query = self.scheme.retriever.query(batch).float().cpu().numpy()
        candidates, retrieved = self.index.search(query, cutoff, exclude)
        valid = candidates > 0
        if self.cooperative or self.rescores:
            rescore = self.scheme.rerank_scores if self.cooperative else self.scheme.retriever.full_score
            rerank = rescore(batch, torch.from_numpy(candidates)).float().cpu().numpy()
            rerank = np.where(valid, rerank, -np.inf).astype(np.float32)
            order = np.argsort(-rerank, axis=1, kind="stable")  # ties keep the retrieval order
        else:
            rerank = retrieved
            order = np.broadcast_to(np.arange(cutoff), candidates.shape)
        order = order[:, :k]
        items = np.take_along_axis(candidates, order, axis=1)
        scores = np.take_along_axis(rerank, order, axis=1)
        retriever_scores = np.take_along_axis(retrieved, order, axis=1)
        if items.shape[1] < k:
            pad = k - items.shape[1]
            items = np.pad(items, ((0, 0), (0, pad)))
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            retriever_scores = np.pad(retriever_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return items, scores, retriever_scores
