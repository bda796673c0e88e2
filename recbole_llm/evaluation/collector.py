r"""RecBole's evaluation ``Collector`` plus what the group metrics need
(:mod:`recbole_llm.evaluation.metrics`): each evaluated user's id and test positives, and the
training interaction counts of every item and user. Gathered only when a configured metric needs
them; the plugin's trainers use this collector (:mod:`recbole_llm.trainer`)."""

import torch
from recbole.evaluator.collector import Collector


class GroupCollector(Collector):
    def __init__(self, config):
        super().__init__(config)
        self._rows = 0

    def data_collect(self, train_data):
        super().data_collect(train_data)
        dataset = train_data.dataset
        if self.register.need("data.item_train_counts"):
            items = dataset.inter_feat[dataset.iid_field]
            self.data_struct.set("data.item_train_counts", torch.bincount(items, minlength=dataset.item_num))
        if self.register.need("data.user_train_counts"):
            users = dataset.inter_feat[dataset.uid_field]
            self.data_struct.set("data.user_train_counts", torch.bincount(users, minlength=dataset.user_num))

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if not self.register.need("rec.positives"):
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if "data.item_train_counts" not in self.data_struct:
            raise ValueError(
                "the group metrics need the training counts: RecBole's Trainer.fit collects them; before a bare "
                "evaluate() call trainer.eval_collector.data_collect(train_data)"
            )
        if len(interaction) != len(scores_tensor):  # a sampled ranking: one interaction row per candidate
            raise ValueError(
                "the group metrics (ColdRecall, HistoryNDCG, ...) rank all items: set eval_args: {mode: full}, "
                f"not {self.config['eval_args']['mode']}"
            )
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        pairs = torch.stack([positive_u.to(self.device) + self._rows, positive_i.to(self.device)], dim=1)
        self.data_struct.update_tensor("rec.positives", pairs)
        self.data_struct.update_tensor("rec.users", interaction[self.config["USER_ID_FIELD"]].to(self.device))
        self._rows += len(scores_tensor)

    def get_data_struct(self):
        struct = super().get_data_struct()
        for key in ("rec.positives", "rec.users"):
            if key in self.data_struct:
                del self.data_struct[key]
        self._rows = 0
        return struct
