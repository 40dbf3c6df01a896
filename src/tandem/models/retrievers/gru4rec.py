"""GRU4Rec, session-based recommendation with recurrent neural networks (Hidasi et al., ICLR 2016).

The history is read in order by a GRU (sec. 3.1); its last hidden state h_t is the user's state, and the
feedforward output layer scores every item, y_i = W_y[i] . h_t + b_y[i]. As a retriever the query is [h_t, 1] and
the item table the output layer [W_y, b_y] (hidden + 1 columns; row 0, the padding item, zero), so the score is the
paper's output before its final activation.

- Input: the paper feeds 1-of-N item codes to the GRU; an item-embedding layer (which the paper also allows) is the
  same map with a rank-d bottleneck, and keeps the parameter count independent of N.
- Only the real items count: a left-padded history is re-aligned so its items come first, and the query is the
  state right after the row's last item, so padding never enters it (an empty history reads one padding step,
  whose input embedding is zero). No per-row lengths go to the host.
- Dropout is applied to the embeddings fed to the GRU and to the output state (the paper's dropout on the hidden
  layers).

Defaults: one GRU layer (seed 000 B.1), embedding and hidden size 64, dropout 0.3 (seed 000 B.2). The paper's
session-parallel mini-batches and its TOP1 loss are training choices outside the model; tandem trains on
(history, next item) examples with the run's loss (`bpr` is the paper's other loss).
"""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.layers import UniformMaskDropout, padded_item_embedding
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("gru4rec")
class GRU4Rec(Retriever):
    """Needs `batch["history"]` [B, H] of item ids, left-padded with 0 (most recent item last)."""

    inputs = frozenset({"history"})

    def __init__(
        self,
        num_items: int,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.3,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_items = num_items
        self.item_embedding = padded_item_embedding(num_items, embedding_dim, init_std)
        self.gru = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = UniformMaskDropout(dropout)
        self.output_embedding = padded_item_embedding(num_items, hidden_size, init_std)
        self.output_bias = nn.Embedding(num_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.output_bias.weight)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        history = batch["history"]
        width = history.shape[1]
        lengths = (history != 0).sum(1)
        # left-padded -> left-aligned: position t of row b reads history[b, (t + width - length_b) mod width]
        shift = (torch.arange(width, device=history.device).unsqueeze(0) + (width - lengths).unsqueeze(1)) % width
        aligned = history.gather(1, shift)  # real items first, padding after them
        outputs, _ = self.gru(self.dropout(self.item_embedding(aligned)))  # [B, H, hidden], top layer
        # the state right after each row's own last item: the padding that follows it is never read
        last = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
        state = self.dropout(outputs.gather(1, last).squeeze(1))
        return torch.cat([state, state.new_ones(state.shape[0], 1)], dim=1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.output_embedding.weight, self.output_bias.weight], dim=1)
