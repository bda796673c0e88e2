r"""
Losses shared by the plugin's models
################################################

:func:`info_nce` is the InfoNCE of RLMRec's alignment (:mod:`recbole_llm.model.alignment`) and of the
contrastive base models that own one (SimGCL, DCCF): one implementation, like RecBole's
``recbole.model.loss``.
"""

import torch
import torch.nn.functional as F


def info_nce(anchor, candidates, temperature, positive=None, candidate_log_weight=None):
    r"""Per-row InfoNCE ``-log(exp(cos(a_b, c_{p_b})/t) / sum_c w_c exp(cos(a_b, c)/t))``.

    Args:
        anchor (torch.Tensor): [B, d], or [G, B, d] for G independent InfoNCEs in one batched product.
        candidates (torch.Tensor): [C, d] (or [G, C, d]), the denominator's candidates; each row's
            positive is one of them.
        temperature (float): softmax temperature.
        positive (torch.Tensor, optional): [B] index of row b's positive among the candidates
            (default: candidate b).
        candidate_log_weight (torch.Tensor, optional): [C] log multiplicity of each candidate, so that
            a candidate standing for k identical in-batch rows counts k times (exact deduplication);
            2-D inputs only.

    Returns:
        torch.Tensor: [B] (or [G, B]) losses.
    """
    logits = (F.normalize(anchor, dim=-1) / temperature) @ F.normalize(candidates, dim=-1).transpose(-1, -2)
    if positive is None:
        positive = torch.arange(anchor.shape[-2], device=anchor.device).expand(logits.shape[:-1])
    if candidate_log_weight is not None:
        logits = logits + candidate_log_weight
    # cross_entropy is one fused log-softmax forward and backward: about 20% faster on the CPU than
    # logsumexp minus the positive's logit, the same value.
    loss = F.cross_entropy(logits.flatten(0, -2), positive.flatten(), reduction="none").view(positive.shape)
    if candidate_log_weight is None:
        return loss
    # It subtracts the positive's weighted logit: the positive's log weight is added back.
    return loss + candidate_log_weight[positive]
