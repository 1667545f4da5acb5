"""The self-reflective contrastive loss (method §3.4): text→image InfoNCE whose denominator holds the
in-batch positives of the other queries plus the query's own reflective negatives.

    L_i = -log( e^{q_i·p_i/τ} / [ e^{q_i·p_i/τ} + Σ_{j≠i} e^{q_i·b_j/τ} + Σ_k e^{q_i·r_ik/τ} ] )

With ``reflective=None`` it is the standard in-batch InfoNCE (the "standard contrastive" arm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reflective_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    logit_scale: torch.Tensor | float,
    reflective: torch.Tensor | None = None,
    reflective_mask: torch.Tensor | None = None,
    same_object: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss over the batch.

    queries (B, D) and positives (B, D) are L2-normalised, row i of positives being query i's
    positive; reflective (B, K, D) are each query's own negatives, reflective_mask (B, K) marks the
    real ones (queries have different numbers of negatives); same_object (B, B) marks pairs of
    queries of the same object, whose positives are dropped as in-batch negatives (they are not
    negatives). logit_scale is 1/τ.
    """
    queries, positives = queries.float(), positives.float()
    logits = logit_scale * queries @ positives.T  # (B, B); the diagonal holds the positives
    if same_object is not None:
        off_diagonal = ~torch.eye(len(queries), dtype=torch.bool, device=queries.device)
        logits = logits.masked_fill(same_object & off_diagonal, float("-inf"))
    if reflective is not None and reflective.shape[1] > 0:
        extra = logit_scale * torch.einsum("bd,bkd->bk", queries, reflective.float())
        if reflective_mask is not None:
            extra = extra.masked_fill(~reflective_mask, float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    targets = torch.arange(len(queries), device=queries.device)
    return F.cross_entropy(logits, targets)
