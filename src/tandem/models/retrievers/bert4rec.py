"""BERT4Rec, sequential recommendation with a bidirectional Transformer (Sun et al., CIKM 2019).

Architecture (sec. 3): input h0_t = item embedding + learnable position embedding (LayerNorm and dropout, as in
BERT); L post-norm Transformer layers with bidirectional multi-head self-attention and a GELU feed-forward of 4d;
output P(v) = softmax(GELU(h_t W^P + b^P) E^T + b^O) with the input item embedding E shared by the output (eq. 7).

As a retriever the history is followed by a [mask] token, and that position's output is the query (the paper's
prediction: "append [mask] to the end of the sequence"): query = [GELU(h W^P + b^P), 1] and item table = [E, b^O]
(d + 1 columns; row 0, the padding item, zero), so the score is the paper's logit. The [mask] token is an extra
input embedding row, not an item. The run's retriever loss on this query trains the paper's "last item masked"
samples.

Cloze training (sec. 3.6) is `auxiliary_loss(batch)`: the row's history followed by its target item, each real
item replaced by [mask] with probability `mask_ratio`, and the softmax cross-entropy over all items of every masked
position's prediction, averaged over masked positions and weighted by `cloze_weight`; every scheme adds it to the
step's losses (`retriever_auxiliary`). With `cloze_weight: 0` the model trains on the last-item samples alone.

Defaults: two layers and two heads, d = 64, feed-forward 4d = 256, mask proportion 0.2 (the paper's ML-1m
setting, also the CoRR authors'), truncated-normal init 0.02 (the paper); dropout 0.3 (seed 000 B.2). Positions
cover `max_seq_len` history items plus the [mask].
"""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.layers import UniformMaskDropout, transformer_encoder
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("bert4rec")
class BERT4Rec(Retriever):
    """Needs `batch["history"]` [B, H] (left-padded with 0, most recent item last); the cloze loss also reads
    `batch["item"]` [B], the next item."""

    inputs = frozenset({"history"})

    def __init__(
        self,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        feedforward_dim: int = 256,
        dropout: float = 0.3,
        mask_ratio: float = 0.2,
        cloze_weight: float = 1.0,
        max_seq_len: int = 20,
        init_std: float = 0.02,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        if cloze_weight < 0:
            raise ValueError(f"cloze_weight must be >= 0, got {cloze_weight}")
        self.num_items = num_items
        self.max_seq_len = max_seq_len
        self.mask_ratio = float(mask_ratio)
        self.cloze_weight = float(cloze_weight)
        self.mask_token = num_items + 1
        self.embedding = nn.Embedding(num_items + 2, embedding_dim, padding_idx=0)  # items 1..N and [mask]
        self.position_embedding = nn.Embedding(max_seq_len + 1, embedding_dim)
        self.input_norm = nn.LayerNorm(embedding_dim)
        self.dropout = UniformMaskDropout(dropout)
        self.encoder = transformer_encoder(embedding_dim, num_heads, feedforward_dim, dropout, num_layers,
                                           norm_first=False)
        self.projection = nn.Linear(embedding_dim, embedding_dim)  # W^P, b^P
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1))  # b^O (entry 0: padding, kept at zero)
        for table in (self.embedding, self.position_embedding):
            nn.init.trunc_normal_(table.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def hidden(self, sequence: torch.Tensor) -> torch.Tensor:
        """Projected outputs GELU(h W^P + b^P) [B, T, d] of a left-padded sequence [B, T], T <= max_seq_len + 1."""
        length = sequence.shape[1]
        positions = torch.arange(length, device=sequence.device) + (self.max_seq_len + 1 - length)
        hidden = self.dropout(self.input_norm(self.embedding(sequence) + self.position_embedding(positions)))
        hidden = self.encoder(hidden, src_key_padding_mask=sequence == 0)
        return nn.functional.gelu(self.projection(hidden))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        history = batch["history"][:, -self.max_seq_len:]
        mask = history.new_full((history.shape[0], 1), self.mask_token)
        query = self.hidden(torch.cat([history, mask], dim=1))[:, -1]
        return torch.cat([query, query.new_ones(query.shape[0], 1)], dim=1)

    def item_table(self) -> torch.Tensor:
        bias = self.output_bias * (torch.arange(self.num_items + 1, device=self.output_bias.device) > 0)
        return torch.cat([self.embedding.weight[: self.num_items + 1], bias.unsqueeze(1)], dim=1)

    def auxiliary_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The cloze loss of the row's history and target, or None when it is off or nothing was masked."""
        if self.cloze_weight == 0 or self.mask_ratio == 0:
            return None
        sequence = torch.cat([batch["history"][:, -self.max_seq_len:], batch["item"].unsqueeze(1)], dim=1)
        masked = (torch.rand(sequence.shape, device=sequence.device) < self.mask_ratio) & (sequence != 0)
        if not bool(masked.any()):
            return None
        targets = sequence[masked]  # [M] items 1..N
        hidden = self.hidden(sequence.masked_fill(masked, self.mask_token))[masked]  # [M, d]
        logits = hidden @ self.embedding.weight[1: self.num_items + 1].T + self.output_bias[1:]
        return self.cloze_weight * nn.functional.cross_entropy(logits, targets - 1)
