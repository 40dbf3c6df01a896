"""BST, Behavior Sequence Transformer (Chen et al., 2019): the sequential-task ranker of seed 000 Table 3
(Caser + BST).

- Tokens: the behaviour sequence (the most recent `sequence_length` history items, the paper's 20) plus the target
  item. A token is the concatenation [item-id embedding, item feature fields, position embedding], each of
  dimension d (seed 000 B.2: d = 64), so its width is T = (2 + item features) * d. As in the paper the position
  is concatenated, not added, and measures how far back the item lies from the target: the paper embeds the time
  gap t(target) - t(item); the batches here carry no timestamps, so the gap is counted in steps (target 0, the
  most recent history item 1, ...).
- Transformer layer (the paper's b = 1 block, 8 heads): S' = LayerNorm(E + Dropout(MH(E))),
  F = LayerNorm(S' + Dropout(LeakyReLU(S' W1 + b1) W2 + b2)), self-attention over sequence + target, padding
  (history id 0) masked as keys. The feed-forward width defaults to 4 T, the Transformer's.
- MLP: the outputs of every token (padding positions zeroed), flattened, concatenated with the other features
  (user feature fields, and the user id when `use_user_id`), through 1024-512-256 LeakyReLU layers (the paper's)
  to a logit (the paper's sigmoid is left to the loss). Dropout 0.3 (seed 000 B.2) in the Transformer and MLP.

Every (row, candidate) pair is its own sequence, [B * L, sequence_length + 1, T], as the target takes part in the
self-attention; without gradients the pairs are scored in row chunks so memory stays bounded.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tandem.models.layers import UniformMaskDropout, padded_item_embedding, use_uniform_mask_dropout
from tandem.models.rankers.base import Ranker
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput
from tandem.registry import register_ranker

# the most activations (elements) one no-grad chunk of pairs may hold in a layer: 2^25 floats = 128 MiB
CHUNK_ELEMENTS = 2 ** 25


def leaky_mlp(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> LeakyReLU -> dropout for each hidden size (the paper's MLP; no output layer)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, int(size)), nn.LeakyReLU(), UniformMaskDropout(dropout)]
        in_dim = int(size)
    return nn.Sequential(*layers)


@register_ranker("bst")
class BST(Ranker):
    """Behavior Sequence Transformer. Needs `batch["history"]` [B, H] (item ids, left-padded with 0) and
    `batch["user"]` [B] when it uses user ids or user features.

    >>> import torch
    >>> model = BST(num_users=3, num_items=10, embedding_dim=8, num_heads=2, mlp_hidden=[16], sequence_length=4)
    >>> batch = {"user": torch.tensor([0, 1]), "history": torch.tensor([[0, 3, 4], [0, 0, 0]])}
    >>> model.score(batch, torch.tensor([[1, 2], [5, 6]])).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_features: FeatureInput = None,
        item_features: FeatureInput = None,
        embedding_dim: int = 64,
        sequence_length: int = 20,
        num_heads: int = 8,
        num_layers: int = 1,
        feedforward_dim: int | None = None,
        mlp_hidden: Sequence[int] = (1024, 512, 256),
        dropout: float = 0.3,
        use_user_id: bool = False,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if sequence_length < 1 or num_layers < 1 or num_heads < 1:
            raise ValueError("sequence_length, num_layers and num_heads must be >= 1")
        self.num_users = num_users
        self.num_items = num_items
        self.sequence_length = sequence_length
        d = embedding_dim
        self.item_embedding = padded_item_embedding(num_items, d, init_std)
        self.item_features = FeatureEmbedding(item_features, d, num_rows=num_items + 1, init_std=init_std)
        self.position_embedding = nn.Embedding(sequence_length + 1, d)  # step gap 0 (target) .. sequence_length
        nn.init.normal_(self.position_embedding.weight, std=init_std)
        self.token_dim = (2 + self.item_features.num_fields) * d
        if self.token_dim % num_heads:
            raise ValueError(f"the token width {self.token_dim} ((2 + item features) x embedding_dim) is not "
                             f"divisible by num_heads={num_heads}")
        self.feedforward_dim = feedforward_dim or 4 * self.token_dim
        self.transformer = nn.ModuleList(
            use_uniform_mask_dropout(nn.TransformerEncoderLayer(
                self.token_dim, num_heads, self.feedforward_dim, dropout, activation=F.leaky_relu, batch_first=True,
                norm_first=False))
            for _ in range(num_layers)
        )
        self.user_embedding = nn.Embedding(num_users, d) if use_user_id else None
        if self.user_embedding is not None:
            nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.user_features = FeatureEmbedding(user_features, d, num_rows=num_users, init_std=init_std)
        self.num_other_fields = int(use_user_id) + self.user_features.num_fields
        self.inputs = frozenset({"history", "user"} if self.num_other_fields else {"history"})
        in_dim = (sequence_length + 1) * self.token_dim + self.num_other_fields * d
        self.mlp = leaky_mlp(in_dim, mlp_hidden, dropout)
        self.output = nn.Linear(int(mlp_hidden[-1]) if len(mlp_hidden) else in_dim, 1)

    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """[item id, item features] of item ids [...] -> [..., T - d] (the position part is added later)."""
        fields = torch.cat([self.item_embedding(items).unsqueeze(-2), self.item_features(items)], dim=-2)
        return fields.flatten(-2)

    def window(self, history: torch.Tensor) -> torch.Tensor:
        """The last `sequence_length` columns of a left-padded history, left-padded with 0 when shorter."""
        width = history.shape[1]
        if width >= self.sequence_length:
            return history[:, width - self.sequence_length:]
        return F.pad(history, (self.sequence_length - width, 0))

    def other_features(self, batch: dict[str, torch.Tensor], rows: int) -> torch.Tensor:
        """User-side fields [B, Fo * d] (empty when the model uses none)."""
        if not self.num_other_fields:
            return self.item_embedding.weight.new_zeros(rows, 0)
        user = batch["user"]
        fields = [self.user_features(user)]
        if self.user_embedding is not None:
            fields.insert(0, self.user_embedding(user).unsqueeze(1))
        return torch.cat(fields, dim=1).flatten(1)

    def _score(self, history: torch.Tensor, other: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores [B, L] from a windowed history [B, S], other features [B, Fo * d] and candidates [B, L]."""
        rows, length = items.shape
        steps = self.sequence_length
        gaps = torch.arange(steps, 0, -1, device=items.device)  # the oldest column is `steps` steps back
        past = torch.cat([self.item_tokens(history),
                          self.position_embedding(gaps).expand(rows, steps, -1)], dim=-1)  # [B, S, T]
        target = torch.cat([self.item_tokens(items),
                            self.position_embedding.weight[0].expand(rows, length, -1)], dim=-1)  # [B, L, T]
        tokens = torch.cat([past.unsqueeze(1).expand(rows, length, steps, self.token_dim), target.unsqueeze(2)],
                           dim=2).reshape(rows * length, steps + 1, self.token_dim)
        padding = torch.cat([history == 0, history.new_zeros(rows, 1, dtype=torch.bool)], dim=1)  # [B, S + 1]
        padding = padding.unsqueeze(1).expand(rows, length, steps + 1).reshape(rows * length, steps + 1)
        for layer in self.transformer:
            tokens = layer(tokens, src_key_padding_mask=padding)
        tokens = tokens.masked_fill(padding.unsqueeze(-1), 0.0).reshape(rows, length, -1)
        features = torch.cat([tokens, other.unsqueeze(1).expand(rows, length, other.shape[-1])], dim=-1)
        return self.output(self.mlp(features)).squeeze(-1)

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        if items.dim() != 2:
            raise ValueError(f"expected items [B, L], got shape {tuple(items.shape)}")
        if "history" not in batch:
            raise ValueError("BST needs batch['history'] [B, H] (item ids, left-padded with 0)")
        history = self.window(batch["history"])
        other = self.other_features(batch, items.shape[0])
        if torch.is_grad_enabled():
            return self._score(history, other, items)
        per_row = items.shape[1] * (self.sequence_length + 1) * max(self.token_dim, self.feedforward_dim)
        step = max(1, CHUNK_ELEMENTS // max(1, per_row))
        return torch.cat([self._score(history[i:i + step], other[i:i + step], items[i:i + step])
                          for i in range(0, items.shape[0], step)], dim=0)
