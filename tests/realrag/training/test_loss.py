"""The reflective InfoNCE against the formula of method §3.4, computed by hand."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from realrag.training.loss import reflective_info_nce


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def by_hand(q, p, r, scale):
    total = 0.0
    for i in range(len(q)):
        pos = math.exp(scale * float(q[i] @ p[i]))
        inbatch = sum(math.exp(scale * float(q[i] @ p[j])) for j in range(len(q)) if j != i)
        reflective = sum(math.exp(scale * float(q[i] @ r[i, k])) for k in range(r.shape[1])) if r is not None else 0.0
        total += -math.log(pos / (pos + inbatch + reflective))
    return total / len(q)


def test_matches_the_published_formula():
    q, p, r = unit(4, 8, seed=1), unit(4, 8, seed=2), unit(4, 1, 8, seed=3)
    assert torch.isclose(reflective_info_nce(q, p, 10.0, r), torch.tensor(by_hand(q, p, r, 10.0)), atol=1e-5)
    assert torch.isclose(reflective_info_nce(q, p, 10.0), torch.tensor(by_hand(q, p, None, 10.0)), atol=1e-5)


def test_reflective_negative_near_the_query_raises_the_loss():
    q, p = unit(3, 8, seed=4), unit(3, 8, seed=5)
    far = -q.unsqueeze(1)  # opposite of the query
    near = q.unsqueeze(1)  # the query itself
    none = reflective_info_nce(q, p, 20.0)
    assert reflective_info_nce(q, p, 20.0, near) > none + 0.1
    assert reflective_info_nce(q, p, 20.0, far) >= none  # e^(-20): adds almost nothing


def test_masks_drop_padding_and_same_object_pairs():
    q, p = unit(3, 8, seed=6), unit(3, 8, seed=7)
    r = unit(3, 2, 8, seed=8)
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    # padding masked out == the loss computed with only the real negatives, row by row
    full = reflective_info_nce(q, p, 5.0, r, mask)
    rows = []
    for i in range(3):
        logits = [5.0 * float(q[i] @ p[j]) for j in range(3)] + [5.0 * float(q[i] @ r[i, k]) for k in range(2) if mask[i, k]]
        rows.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    assert torch.isclose(full, torch.tensor(sum(rows) / 3), atol=1e-5)
    # queries 0 and 1 of the same object: their positives are not negatives of each other
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    masked = reflective_info_nce(q, p, 5.0, same_object=same)
    rows = []
    for i in range(3):
        logits = [5.0 * float(q[i] @ p[j]) for j in range(3) if j == i or not same[i, j]]
        own = 5.0 * float(q[i] @ p[i])
        rows.append(-own + math.log(sum(math.exp(x) for x in logits)))
    assert torch.isclose(masked, torch.tensor(sum(rows) / 3), atol=1e-5)
