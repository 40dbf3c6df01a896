"""DIN, Deep Interest Network (Zhou et al., 2018): the ranker of the sequential task in seed 000 (B.2: activation
unit with hidden size 64 and sigmoid activation, prediction MLP 200-80, embedding 64, dropout 0.3).

- Item representation e(i): the item-id embedding; with item features, the concatenation [id, feature fields]
  projected linearly back to d (the same map for candidates and history items).
- Activation unit: a(h, c) = w^T sigmoid(W [h, c, h - c, h * c] + b) + b' for each history item h and candidate c.
  W is applied in its decomposed form (W_h + W_d) h + (W_c - W_d) c + W_p (h * c), which is the same function
  without materialising the [B, L, H, 4d] input: the h term is computed once per history position, the c term once
  per candidate, only W_p (h * c) per pair. The sigmoid unit runs in cache-sized blocks of rows with a
  hand-written backward (`_SigmoidAttention`), so no [B, L, H, hidden] tensor is ever allocated whole.
- Interest: sum_h a(h, c) e(h) over the non-padding positions (history id 0 is masked out). As in DIN the weights
  are NOT softmax-normalised, so the pooled vector keeps the intensity of the interest.
- Prediction: MLP over [user id (optional), user feature fields, interest, e(c), interest * e(c)] -> scalar,
  plus a per-item bias b(c). The interest * e(c) field and the item bias are what the authors' DIN scorer has
  (seed 000's code); both can be switched off (`interest_product`, `item_bias`) for the plain DIN of the DIN paper.
  The first layer's user block is applied once per row, not once per candidate.
- `history_positions: P` (tandem's option, default 0 = the paper's order-blind DIN): a learned vector per recency
  position (1 = the latest item, P and beyond share one) is added to each history item's e(h) before attention and
  pooling, so the ranker can see the order a sequential retriever reads (benchmarks/order_probe.py).

Everything is batched over B rows x L candidates x H history positions; the only loop is over blocks of rows in the
activation unit (a few dozen per batch), which keeps its working set in cache.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from tandem.models.layers import padded_item_embedding
from tandem.models.rankers.base import Ranker
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput, make_activation, make_mlp
from tandem.registry import register_ranker


CHUNK_ELEMENTS = 1 << 19
"""Elements of one [rows, L, H, hidden] block of the activation unit (2 MiB in float32): small enough to stay in
cache, large enough for an efficient matrix product. Full-size [B, L, H, hidden] buffers (tens of MB each) cost
more in page faults and memory traffic than in arithmetic on a CPU."""


def _rows_per_block(candidates: int, history: int, width: int) -> int:
    """Batch rows per block so that a block holds about CHUNK_ELEMENTS numbers."""
    return max(1, CHUNK_ELEMENTS // max(1, candidates * history * width))


def _pre_activation(history: torch.Tensor, candidates: torch.Tensor, from_history: torch.Tensor,
                    from_candidate: torch.Tensor, w_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations [b*L*H, k] of one block, from_candidate + from_history + (c * h) W_p^T summed in one buffer,
    and the products c * h [b*L*H, d]."""
    k, d = w_p.shape
    pre = (from_candidate.unsqueeze(2) + from_history.unsqueeze(1)).view(-1, k)
    products = (candidates.unsqueeze(2) * history.unsqueeze(1)).view(-1, d)
    return pre.addmm_(products, w_p.t()), products


def _sigmoid_attention(history: torch.Tensor, candidates: torch.Tensor, from_history: torch.Tensor,
                       from_candidate: torch.Tensor, w_p: torch.Tensor, w_o: torch.Tensor, b_o: torch.Tensor,
                       rows: int, keep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """w_o . sigmoid(pre) + b_o as [B, L, H], block by block; with `keep`, the sigmoid blocks for the backward."""
    batch, length, positions = candidates.shape[0], candidates.shape[1], history.shape[1]
    out = history.new_empty(batch, length, positions)
    kept = []
    for start in range(0, batch, rows):
        block = slice(start, start + rows)
        pre, _ = _pre_activation(history[block], candidates[block], from_history[block], from_candidate[block], w_p)
        hidden = pre.sigmoid_()
        torch.mv(hidden, w_o, out=out[block].view(-1))
        if keep:
            kept.append(hidden)
    return out.add_(b_o), kept


class _SigmoidAttention(torch.autograd.Function):
    """DIN's sigmoid activation unit with a hand-written, blockwise backward: no [B, L, H, *] tensor is ever built
    whole, and the products c * h are recomputed per block rather than stored."""

    @staticmethod
    def forward(ctx, history, candidates, from_history, from_candidate, w_p, w_o, b_o, rows):  # type: ignore[override]
        out, kept = _sigmoid_attention(history, candidates, from_history, from_candidate, w_p, w_o, b_o, rows, True)
        ctx.save_for_backward(history, candidates, w_p, w_o, *kept)
        ctx.rows, ctx.bias_shape = rows, b_o.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        history, candidates, w_p, w_o, *kept = ctx.saved_tensors
        batch, length, positions, k = candidates.shape[0], candidates.shape[1], history.shape[1], w_p.shape[0]
        grad = grad.contiguous()
        grads = [torch.empty_like(history), torch.empty_like(candidates),
                 history.new_empty(batch, positions, k), history.new_empty(batch, length, k)]
        grad_h, grad_c, grad_from_h, grad_from_c = grads
        grad_w_p, grad_w_o = torch.zeros_like(w_p), torch.zeros_like(w_o)
        for index, start in enumerate(range(0, batch, ctx.rows)):
            block = slice(start, start + ctx.rows)
            h, c, hidden = history[block], candidates[block], kept[index]
            rows = h.shape[0]
            products = (c.unsqueeze(2) * h.unsqueeze(1)).view(-1, h.shape[-1])
            g = grad[block].reshape(-1)
            grad_w_o.addmv_(hidden.t(), g)
            grad_pre = torch.ops.aten.sigmoid_backward(w_o.expand_as(hidden), hidden).mul_(g.unsqueeze(1))
            grad_w_p.addmm_(grad_pre.t(), products)
            blocked = grad_pre.view(rows, length, positions, k)
            torch.sum(blocked, 2, out=grad_from_c[block])
            torch.sum(blocked, 1, out=grad_from_h[block])
            grad_products = (grad_pre @ w_p).view(rows, length, positions, history.shape[-1])
            torch.sum(grad_products * h.unsqueeze(1), 2, out=grad_c[block])
            torch.sum(grad_products.mul_(c.unsqueeze(2)), 1, out=grad_h[block])
        return grad_h, grad_c, grad_from_h, grad_from_c, grad_w_p, grad_w_o, grad.sum().reshape(ctx.bias_shape), None


class ActivationUnit(nn.Module):
    """DIN's local activation unit over [h, c, h - c, h * c], one hidden layer (sigmoid by default)."""

    def __init__(self, dim: int, hidden: int = 64, activation: str = "sigmoid") -> None:
        super().__init__()
        self.dim = dim
        self.hidden = nn.Linear(4 * dim, hidden)
        self.activation = make_activation(activation, hidden)
        self.output = nn.Linear(hidden, 1)

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Raw attention weights [B, L, H] of `history` [B, H, d] for each of `candidates` [B, L, d].

        W [h, c, h - c, h * c] = (W_h + W_d) h + (W_c - W_d) c + W_p (h * c): the first two terms are computed once
        per history position and once per candidate, only the last one per (candidate, history) pair."""
        d = self.dim
        w_h, w_c, w_d, w_p = self.hidden.weight.split(d, dim=1)  # each [hidden, d]
        from_history = history @ (w_h + w_d).t()  # [B, H, hidden]
        from_candidate = torch.addmm(self.hidden.bias, candidates.flatten(0, 1), (w_c - w_d).t())
        from_candidate = from_candidate.view(*candidates.shape[:2], w_p.shape[0])  # [B, L, hidden]
        if not isinstance(self.activation, nn.Sigmoid):  # other activations: autograd over the whole batch
            # [B * L * H, hidden] rows, so a PReLU's channel axis is the hidden unit, as it should be
            pre, _ = _pre_activation(history, candidates, from_history, from_candidate, w_p)
            weights = self.output(self.activation(pre)).view(*candidates.shape[:2], history.shape[1])
            return weights
        rows = _rows_per_block(candidates.shape[1], history.shape[1], max(d, w_p.shape[0]))
        w_o, b_o = self.output.weight.view(-1), self.output.bias
        arguments = (history, candidates, from_history, from_candidate, w_p, w_o, b_o)
        if torch.is_grad_enabled() and any(t.requires_grad for t in arguments):
            return _SigmoidAttention.apply(*arguments, rows)
        return _sigmoid_attention(*arguments, rows, False)[0]

    def reference(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The same weights computed from the explicit concatenation (for tests; memory-hungry)."""
        h = history.unsqueeze(1).expand(-1, candidates.shape[1], -1, -1)
        c = candidates.unsqueeze(2).expand_as(h)
        return self.output(self.activation(self.hidden(torch.cat([h, c, h - c, h * c], dim=-1)))).squeeze(-1)


@register_ranker("din")
class DIN(Ranker):
    """Deep Interest Network. Needs `batch["history"]` [B, H] (left-padded with 0) and `batch["user"]` [B] when
    it uses user ids or user features.

    >>> import torch
    >>> model = DIN(num_users=3, num_items=10, embedding_dim=8)
    >>> batch = {"user": torch.tensor([0, 1]), "history": torch.tensor([[0, 3, 4], [0, 0, 0]])}
    >>> model.score(batch, torch.tensor([[1, 2], [5, 6]])).shape
    torch.Size([2, 2])
    """

    sparse_lookups = True  # every table is read by calling it

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_features: FeatureInput = None,
        item_features: FeatureInput = None,
        embedding_dim: int = 64,
        attention_hidden: int = 64,
        attention_activation: str = "sigmoid",
        mlp_hidden: Sequence[int] = (200, 80),
        mlp_activation: str = "relu",
        dropout: float = 0.3,
        use_user_id: bool = False,
        interest_product: bool = True,
        item_bias: bool = True,
        history_positions: int = 0,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if history_positions < 0:
            raise ValueError(f"history_positions must be >= 0, got {history_positions}")
        self.num_users = num_users
        self.num_items = num_items
        self.use_user_id = use_user_id
        self.interest_product = interest_product
        d = embedding_dim
        self.item_embedding = padded_item_embedding(num_items, d, init_std)
        self.item_features = FeatureEmbedding(item_features, d, num_rows=num_items + 1, init_std=init_std)
        self.item_projection = (
            nn.Linear((1 + self.item_features.num_fields) * d, d) if self.item_features.num_fields else None
        )
        self.user_embedding = nn.Embedding(num_users, d) if use_user_id else None
        if self.user_embedding is not None:
            nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.user_features = FeatureEmbedding(user_features, d, num_rows=num_users, init_std=init_std)
        self.attention = ActivationUnit(d, attention_hidden, attention_activation)
        num_user_fields = int(use_user_id) + self.user_features.num_fields
        self.inputs = frozenset({"history", "user"} if num_user_fields else {"history"})
        in_dim = (num_user_fields + 2 + int(interest_product)) * d
        self.mlp = make_mlp(in_dim, mlp_hidden, dropout, mlp_activation)
        self.output = nn.Linear(int(mlp_hidden[-1]) if len(mlp_hidden) else in_dim, 1)
        self.item_bias = nn.Embedding(num_items + 1, 1, padding_idx=0) if item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        # tandem's option, not the paper's: a learned vector per recency position (1 = the latest item, positions
        # beyond `history_positions` share the last one) added to each history item, so the ranker can see order
        self.position_embedding = nn.Embedding(history_positions + 1, d) if history_positions else None
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=init_std)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """e(i) [..., d] for item ids [...]."""
        embedded = self.item_embedding(items)
        if self.item_projection is None:
            return embedded
        fields = torch.cat([embedded.unsqueeze(-2), self.item_features(items)], dim=-2)
        return self.item_projection(fields.flatten(-2))

    def representations(self, items: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e(i) of the candidates [B, L, d] and of the history [B, H, d]. With item features, each distinct id is
        embedded and projected once (B (L + H) ids usually hold far fewer distinct items), then gathered."""
        if self.item_projection is None:
            return self.item_embedding(items), self.item_embedding(history)
        unique, inverse = torch.unique(torch.cat([items.flatten(), history.flatten()]), return_inverse=True)
        gathered = self.item_representation(unique)[inverse]
        d, count = gathered.shape[-1], items.numel()
        return gathered[:count].view(*items.shape, d), gathered[count:].view(*history.shape, d)

    def interest(self, history: torch.Tensor, history_vectors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Attention-pooled history [B, L, d] for candidate representations [B, L, d]; padding (id 0) masked."""
        weights = self.attention(history_vectors, candidates)  # [B, L, H]
        weights = weights.masked_fill((history == 0).unsqueeze(1), 0.0)
        return weights @ history_vectors

    def user_fields(self, user: torch.Tensor) -> torch.Tensor:
        """[B, Fu * d]: the user id embedding (when used) and the user feature fields, flattened."""
        fields = [self.user_features(user)]
        if self.user_embedding is not None:
            fields.insert(0, self.user_embedding(user).unsqueeze(1))
        return torch.cat(fields, dim=1).flatten(1)

    def predict(self, user: torch.Tensor | None, per_candidate: torch.Tensor) -> torch.Tensor:
        """MLP([user, per_candidate]) -> [B, L]. The first layer's user block is applied once per row [B] and
        broadcast over the L candidates instead of multiplying L copies of the same user vector."""
        first = self.mlp[0] if len(self.mlp) else self.output
        if user is None:
            hidden = first(per_candidate)
        else:
            split = user.shape[-1]
            from_user = torch.addmm(first.bias, user, first.weight[:, :split].t())  # [B, out]
            hidden = F.linear(per_candidate, first.weight[:, split:]) + from_user.unsqueeze(1)
        if not len(self.mlp):
            return hidden.squeeze(-1)
        return self.output(self.mlp[1:](hidden)).squeeze(-1)

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        if items.dim() != 2:
            raise ValueError(f"expected items [B, L], got shape {tuple(items.shape)}")
        if "history" not in batch:
            raise ValueError("DIN needs batch['history'] [B, H] (item ids, left-padded with 0)")
        history = batch["history"]
        candidates, history_vectors = self.representations(items, history)  # [B, L, d], [B, H, d]
        if self.position_embedding is not None:  # left-padded: the last column is every row's latest item
            recency = torch.arange(history.shape[1], 0, -1, device=history.device)
            history_vectors = history_vectors + self.position_embedding(
                recency.clamp(max=self.position_embedding.num_embeddings - 1))
        interest = self.interest(history, history_vectors, candidates)
        parts = [interest, candidates]
        if self.interest_product:
            parts.append(interest * candidates)
        uses_user = self.user_embedding is not None or self.user_features.num_fields > 0
        user = self.user_fields(batch["user"]) if uses_user else None
        scores = self.predict(user, torch.cat(parts, dim=-1))
        if self.item_bias is not None:
            scores = scores + self.item_bias(items).squeeze(-1)
        return scores
