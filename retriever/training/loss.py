"""Symmetric InfoNCE with in-batch negatives, multi-positive labels and a learnable temperature.

Queries are scored against every document in the (global) batch and documents
against every query. Items sharing an entity id are all positives of each other
(two questions about the same landmark in one batch must not push each other's
passages away). Under multi-process training the negatives are gathered from every
process, with gradients flowing through the local slice.

Late-interaction models (``(B, T, D)`` embeddings) are scored with MaxSim, the same
fine-grained score retrieval uses (ReT-1's ``fg_loss``); single vectors by dot product.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0, keeping the autograd graph for this process's slice."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


def similarity(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """``(Nq, Nd)`` scores: dot product of vectors, or MaxSim of ``(N, T, D)`` token sets divided by
    the number of query tokens ``T``.

    MaxSim sums ``T`` cosines, so it spans ``[-T, T]``; under the temperature that suits one
    cosine (τ = 0.05) its logits reach ``±T/τ`` and the softmax saturates from the first step
    (the loss then barely moves). Dividing by ``T``, a constant for every query, changes no
    ranking and gives the temperature the same meaning for both heads.
    """
    if queries.dim() == 3:
        from retriever.encoder import maxsim_scores

        return maxsim_scores(queries, documents) / queries.shape[1]
    return queries @ documents.T


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-log(sum_pos exp(logit) / sum_all exp(logit))``."""
    all_term = torch.logsumexp(logits, dim=1)
    pos_term = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    return (all_term - pos_term).mean()


class ContrastiveLoss(nn.Module):
    """Holds the learnable temperature (as ``log(1/τ)``, clamped at τ ≥ 0.01)."""

    def __init__(self, temperature_init: float = 0.05, learnable: bool = True, gather: bool = True):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)), requires_grad=learnable)
        self.gather = gather

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale.detach().clamp(max=math.log(100.0)).exp())

    def forward(
        self, queries: torch.Tensor, documents: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``queries``/``documents``: (B, D) or (B, T, D) normalised; ``labels``: (B,) entity keys."""
        all_q = gather_with_grad(queries) if self.gather else queries
        all_d = gather_with_grad(documents) if self.gather else documents
        all_labels = gather_with_grad(labels) if self.gather else labels
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        positives = labels[:, None] == all_labels[None, :]
        q2d = scale * similarity(queries.float(), all_d.float())
        d2q = scale * similarity(all_q.float(), documents.float()).T  # the same query->document scores
        loss = 0.5 * (multi_positive_nce(q2d, positives) + multi_positive_nce(d2q, positives))
        with torch.no_grad():
            top = q2d.argmax(dim=1)
            accuracy = positives.gather(1, top[:, None]).float().mean()
        return loss, {"loss": float(loss.detach()), "in_batch_acc": float(accuracy), "temperature": self.temperature}
