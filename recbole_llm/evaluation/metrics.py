r"""
Group metrics: Recall and NDCG@K on a group of items or of users
################################################################

RecBole reports one number over all users; these metrics say where it comes from (RecBole issues
#671, #701). Each is RecBole's Recall or NDCG@K (same formulas, full ranking over ALL items)
restricted to a group, averaged over the users that have at least one test positive in the group:

==================  ==========================================================================
metric (result key) group
==================  ==========================================================================
ColdRecall/NDCG     positives that are *cold items*: no training interaction (a cold-start split's
(``coldrecall@K``)  held-out items, or an item a random split left out of training)
WarmRecall/NDCG     positives that are warm items (at least one training interaction)
HeadRecall/NDCG     positives among the ``group_head_share`` (0.2) most-interacted items in training
TailRecall/NDCG     positives among the other items (cold items included)
HistoryRecall/NDCG  users by training-history length, one key per bucket of
(``historyrecall    ``group_history_buckets`` (upper bounds; [5, 20, 50] gives 1-5, 6-20, 21-50,
[6-20]@K``)         51+), plus ``[0]``: users without training interaction (cold users)
==================  ==========================================================================

For an item group a user's Recall@K is (hits in the group) / (positives in the group), and NDCG@K
counts only the group's positives as relevant (its ideal ranks them first). Items of every group
compete in one ranking: a cold item's metric says how the model ranks it among all items. A group
that no evaluated user has a positive in (e.g. cold items of an ordinary split) reports ``nan``.
Head items are the ``ceil(group_head_share * n_items)`` items with the most training interactions,
ties broken by internal id.

They need the full ranking (``eval_args: mode: full``) and the training counts, which
:class:`~recbole_llm.evaluation.collector.GroupCollector` gathers (RecBole's ``Trainer.fit`` collects
the training counts; a bare ``evaluate`` of a fresh trainer needs
``trainer.eval_collector.data_collect(train_data)`` first, as RecBole's popularity metrics do).

Registration: RecBole finds a metric by name in the tables of :mod:`recbole.evaluator.register`
(``metrics_dict``, ``metric_information``, ``metric_types``, ``smaller_metrics``), which its own
docs fill by editing ``recbole/evaluator/metrics.py``. :func:`register_metrics` adds these classes
to those tables instead (importing this module does it, as the plugin's Config and trainers do),
so ``metrics: [Recall, ColdRecall, HistoryNDCG]`` and ``valid_metric: coldrecall@20`` work in
configs, logs, returned dicts and tuning.
"""

import math

import numpy as np
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

GROUP_NEEDS = ["rec.items", "rec.positives", "rec.users", "data.item_train_counts", "data.user_train_counts"]


class GroupMetric(AbstractMetric):
    r"""Recall or NDCG@K over one or more groups; subclasses say which (``groups``) and which measure."""

    metric_type = EvaluatorType.RANKING
    metric_need = GROUP_NEEDS
    measure = None  # "recall" or "ndcg"

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]
        self.head_share = config["group_head_share"]
        self.history_buckets = config["group_history_buckets"]

    def calculate_metric(self, dataobject):
        ranked = dataobject.get("rec.items").numpy()
        positives = dataobject.get("rec.positives").numpy()
        users = dataobject.get("rec.users").numpy()
        item_counts = dataobject.get("data.item_train_counts").numpy()
        user_counts = dataobject.get("data.user_train_counts").numpy()
        n_rows, n_items = len(ranked), len(item_counts)
        rows, items = positives[:, 0], positives[:, 1]
        hits = np.isin(np.arange(n_rows)[:, None] * n_items + ranked, rows * n_items + items)
        result = {}
        for label, item_mask, user_mask in self.groups(item_counts, user_counts[users]):
            in_group = item_mask[items]
            group_hits = hits & item_mask[ranked]
            group_positives = np.bincount(rows[in_group], minlength=n_rows)
            keep = (group_positives > 0) & user_mask
            values = self.measure_fn(group_hits[keep], group_positives[keep])
            name = type(self).__name__.lower() + label
            for k in self.topk:
                value = values[:, k - 1].mean() if len(values) else math.nan
                result[f"{name}@{k}"] = round(float(value), self.decimal_place)
        return result

    def groups(self, item_counts, history):
        r"""``(label, item mask [n_items], user mask [n_rows])`` of each group this metric reports."""
        raise NotImplementedError

    def measure_fn(self, hits, n_positives):
        return recall(hits, n_positives) if self.measure == "recall" else ndcg(hits, n_positives)


def recall(hits, n_positives):
    r"""RecBole's Recall@1..K per user: ``hits`` [n, K] bool, ``n_positives`` [n]."""
    return np.cumsum(hits, axis=1) / n_positives[:, None]


def ndcg(hits, n_positives):
    r"""RecBole's NDCG@1..K per user (binary relevance; the ideal ranks min(positives, k) first)."""
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    ideal_len = np.minimum(n_positives, k)
    idcg = np.where(np.arange(k)[None, :] < ideal_len[:, None], ideal[None, :], ideal[ideal_len - 1][:, None])
    return np.cumsum(np.where(hits, discount, 0.0), axis=1) / idcg


def everyone(history):
    return np.ones(len(history), dtype=bool)


def cold_items(item_counts):
    mask = item_counts == 0
    mask[0] = False  # padding
    return mask


def head_items(item_counts, share):
    n_real = len(item_counts) - 1
    order = np.argsort(-item_counts[1:], kind="stable") + 1
    mask = np.zeros(len(item_counts), dtype=bool)
    mask[order[: math.ceil(share * n_real)]] = True
    return mask


class ItemGroupMetric(GroupMetric):
    def groups(self, item_counts, history):
        yield "", self.item_group(item_counts), everyone(history)


class ColdMetric(ItemGroupMetric):
    def item_group(self, item_counts):
        return cold_items(item_counts)


class WarmMetric(ItemGroupMetric):
    def item_group(self, item_counts):
        mask = ~cold_items(item_counts)
        mask[0] = False
        return mask


class HeadMetric(ItemGroupMetric):
    def item_group(self, item_counts):
        return head_items(item_counts, self.head_share)


class TailMetric(ItemGroupMetric):
    def item_group(self, item_counts):
        mask = ~head_items(item_counts, self.head_share)
        mask[0] = False
        return mask


class HistoryMetric(GroupMetric):
    def groups(self, item_counts, history):
        all_items = np.ones(len(item_counts), dtype=bool)
        yield "[0]", all_items, history == 0
        low = 1
        for high in self.history_buckets:
            yield f"[{low}-{high}]", all_items, (history >= low) & (history <= high)
            low = high + 1
        yield f"[{low}+]", all_items, history >= low


def _metric(name, group, measure, doc):
    return type(name, (group,), {"__module__": __name__, "measure": measure, "__doc__": doc})


ColdRecall = _metric("ColdRecall", ColdMetric, "recall", "Recall@K on cold items (no training interaction).")
ColdNDCG = _metric("ColdNDCG", ColdMetric, "ndcg", "NDCG@K on cold items (no training interaction).")
WarmRecall = _metric("WarmRecall", WarmMetric, "recall", "Recall@K on warm items (a training interaction or more).")
WarmNDCG = _metric("WarmNDCG", WarmMetric, "ndcg", "NDCG@K on warm items (a training interaction or more).")
HeadRecall = _metric("HeadRecall", HeadMetric, "recall", "Recall@K on the most-interacted items (group_head_share).")
HeadNDCG = _metric("HeadNDCG", HeadMetric, "ndcg", "NDCG@K on the most-interacted items (group_head_share).")
TailRecall = _metric("TailRecall", TailMetric, "recall", "Recall@K on the long tail (all but the head items).")
TailNDCG = _metric("TailNDCG", TailMetric, "ndcg", "NDCG@K on the long tail (all but the head items).")
HistoryRecall = _metric("HistoryRecall", HistoryMetric, "recall", "Recall@K per user history-length bucket.")
HistoryNDCG = _metric("HistoryNDCG", HistoryMetric, "ndcg", "NDCG@K per user history-length bucket.")

GROUP_METRICS = [
    ColdRecall, ColdNDCG, WarmRecall, WarmNDCG, HeadRecall, HeadNDCG, TailRecall, TailNDCG, HistoryRecall, HistoryNDCG,
]


def register_metrics(metrics=GROUP_METRICS):
    r"""Add ``metrics`` to RecBole's metric registry (see the module docstring); idempotent."""
    from recbole.evaluator import register as registry

    for cls in metrics:
        name = cls.__name__.lower()
        known = registry.metrics_dict.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"metric name {name!r} is taken by {known.__module__}.{known.__name__}")
        registry.metrics_dict[name] = cls
        registry.metric_information[name] = cls.metric_need
        registry.metric_types[name] = cls.metric_type
        if cls.smaller and name not in registry.smaller_metrics:
            registry.smaller_metrics.append(name)


register_metrics()
