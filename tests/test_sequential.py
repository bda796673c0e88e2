r"""Sequential recommenders with RLM: SASRec_RLM, GRU4Rec_RLM, BERT4Rec_RLM and a user's own."""

import logging

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.sequential_recommender import BERT4Rec, GRU4Rec, SASRec
from recbole.utils import init_seed
from torch import nn

from conftest import tiny_config_dict, tiny_data
from recbole_llm import Config, get_model, rlm
from recbole_llm.build import ensure_profiles
from recbole_llm.model.adapters import BERT4RecAdapter, SequentialAdapter, adapter_for
from recbole_llm.model.sequential import AlignedSequentialRecommender, SequenceStep
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError
from recbole_llm.trainer import get_trainer

# RecBole's sequential defaults (leave-one-out by time, full ranking), small widths for speed.
SEQUENTIAL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    "hidden_size": 8,
    "inner_size": 16,
    "n_heads": 2,
}


def make_model(tmp_path, model="SASRec_RLM", **overrides):
    config, dataset, train_data, valid_data, test_data = tiny_data(tmp_path, model=model, **{**SEQUENTIAL, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model(config["model"])(config, train_data._dataset), train_data, valid_data, test_data


def first_batch(model, train_data):
    model.train()
    return next(iter(train_data))


FAST = [("SASRec", "con", "CE"), ("GRU4Rec", "gen", "CE"), ("BERT4Rec", "gen", "BPR"), ("SASRec", "gen", "BPR")]
GRID = [(b, a, t) for b in ("SASRec", "GRU4Rec", "BERT4Rec") for a in ("con", "gen") for t in ("CE", "BPR")]


@pytest.mark.parametrize(
    "base, align, loss_type", FAST + [pytest.param(*case, marks=pytest.mark.slow) for case in GRID if case not in FAST]
)
def test_sequential_rlm_trains_and_evaluates(tmp_path, base, align, loss_type):
    config, model, train_data, valid_data, test_data = make_model(tmp_path, f"{base}_RLM", align=align, loss_type=loss_type)
    assert isinstance(model, AlignedSequentialRecommender) and isinstance(model, get_model(base))
    losses = model.calculate_loss(first_batch(model, train_data))
    assert isinstance(losses, tuple) and len(losses) == 2 and losses[1].item() > 0
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    before = model.item_embedding.weight.detach().clone()
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    assert not torch.equal(before, model.item_embedding.weight)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.alignment.parameters())
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert 0.0 <= result["recall@5"] <= 1.0


def test_align_none_is_the_base(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="none")
    assert model.alignment is None
    assert isinstance(model.calculate_loss(first_batch(model, train_data)), torch.Tensor)


def test_adapters_are_declared_for_every_sequential_base():
    assert type(adapter_for(SASRec)) is SequentialAdapter and type(adapter_for(GRU4Rec)) is SequentialAdapter
    assert isinstance(adapter_for(BERT4Rec), BERT4RecAdapter)
    assert get_model("SASRec_RLM").rlm_base is SASRec


@pytest.mark.parametrize("base, encoder", [("SASRec", "trm_encoder"), ("GRU4Rec", "gru_layers"), ("BERT4Rec", "trm_encoder")])
@pytest.mark.parametrize("align", ["con", "gen"])
def test_one_forward_pass_per_step(tmp_path, base, encoder, align):
    _, model, train_data, _, _ = make_model(tmp_path, f"{base}_RLM", align=align)
    calls = []
    getattr(model, encoder).register_forward_hook(lambda *_: calls.append(1))
    model.calculate_loss(first_batch(model, train_data))
    assert len(calls) == 1


@pytest.mark.parametrize("loss_type, groups", [("CE", 1), ("BPR", 2)])
def test_con_aligns_the_scored_sequence_representation_and_the_steps_items(tmp_path, monkeypatch, loss_type, groups):
    _, model, train_data, _, _ = make_model(tmp_path, align="con", loss_type=loss_type)
    batch = first_batch(model, train_data)
    seen, outputs = {}, []
    original_forward = SASRec.forward
    monkeypatch.setattr(SASRec, "forward", lambda self, *a: outputs.append(original_forward(self, *a)) or outputs[-1])
    original = model.alignment.align_sequences

    def spy(sequences, users, user_profile, item_all, item_groups, item_profile, candidates=None, positive=None):
        seen.update(sequences=sequences, users=users, items=item_groups, item_all=item_all, positive=positive)
        return original(sequences, users, user_profile, item_all, item_groups, item_profile, candidates, positive)

    model.alignment.align_sequences = spy
    model.calculate_loss(batch)
    assert seen["sequences"] is outputs[0]  # the representation SASRec scores with, not a second one
    assert torch.equal(seen["users"], batch["user_id"])
    assert len(seen["items"]) == groups and torch.equal(seen["items"][0], batch["item_id"])
    if groups == 2:
        assert torch.equal(seen["items"][1], batch["neg_item_id"])
    assert seen["item_all"].data_ptr() == model.item_embedding.weight.data_ptr()
    assert torch.equal(model.aligned_users[seen["positive"]], batch["user_id"])  # each row's own user


def test_gen_masks_a_share_of_real_input_positions_only_inside_a_step(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="gen", mask_ratio=0.5)
    item_seq = first_batch(model, train_data)["item_id_list"]
    plain = model.item_embedding(item_seq)
    model._step = SequenceStep(item_seq)
    masked = model.item_embedding(item_seq).reshape(-1, plain.shape[-1])
    seeds = model._step.seeds
    real = (item_seq.reshape(-1) > 0).nonzero().view(-1)
    assert len(seeds) == int(len(real) * 0.5) and set(seeds.tolist()) <= set(real.tolist())  # padding never masked
    assert torch.allclose(masked[seeds], model.alignment.mask_token.expand(len(seeds), -1))
    kept = torch.ones(len(masked), dtype=torch.bool)
    kept[seeds] = False
    assert torch.equal(masked[kept], plain.reshape(-1, plain.shape[-1])[kept])
    assert torch.equal(model.item_embedding(item_seq.clone()), plain)  # only the step's own sequence
    model._step = None
    assert torch.equal(model.item_embedding(item_seq), plain)


def test_gen_reconstructs_the_masked_items_from_their_positions_outputs(tmp_path, monkeypatch):
    _, model, train_data, _, _ = make_model(tmp_path, align="gen")
    batch = first_batch(model, train_data)
    seen = {}
    original = model.alignment.reconstruction_loss

    def spy(outputs, profiles, positive):
        seen.update(outputs=outputs, profiles=profiles, positive=positive)
        return original(outputs, profiles, positive)

    model.alignment.reconstruction_loss = spy
    steps = []
    original_loss = type(model)._gen_loss
    monkeypatch.setattr(type(model), "_gen_loss", lambda self, i: steps.append(self._step) or original_loss(self, i))
    model.calculate_loss(batch)
    step = steps[0]
    items = batch["item_id_list"].reshape(-1)[step.seeds]
    assert torch.equal(seen["outputs"], step.positions.reshape(-1, step.positions.shape[-1])[step.seeds])
    assert torch.equal(seen["profiles"][seen["positive"]], model.item_profile[items])
    assert len(seen["profiles"]) == len(items.unique())  # each masked item once among the candidates


def test_bert4rec_gen_keeps_bert4recs_own_masking(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, "BERT4Rec_RLM", align="gen")
    assert not model.item_embedding._forward_hooks  # no second mask token, no extra masking
    batch = first_batch(model, train_data)
    seen = {}
    original = model.alignment.reconstruction_loss
    model.alignment.reconstruction_loss = lambda o, p, positive: seen.update(n=len(o), items=p[positive]) or original(o, p, positive)
    model.calculate_loss(batch)
    targets = batch["MASK_INDEX"] > 0
    assert seen["n"] == int(targets.sum())
    assert sorted(seen["items"].tolist()) == sorted(model.item_profile[batch["Pos_item_id"][targets]].tolist())


def test_predictions_are_the_bases(tmp_path):
    config, model, train_data, _, test_data = make_model(tmp_path, align="gen")
    base = SASRec(config, train_data._dataset)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("alignment.")})
    model.eval(), base.eval()
    batch = next(iter(test_data))[0]
    assert torch.equal(model.full_sort_predict(batch), base.full_sort_predict(batch))
    assert not any(k.endswith("_profile") for k in model.state_dict())  # profiles are not checkpointed


class MeanPooling(SequentialRecommender):
    r"""A user's own RecBole sequential model: the mean of the sequence's item embeddings."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_embedding = nn.Embedding(self.n_items, config["hidden_size"], padding_idx=0)

    def forward(self, item_seq, item_seq_len):
        means = self.item_embedding(item_seq).cumsum(dim=1) / torch.arange(1, item_seq.shape[1] + 1).view(1, -1, 1)
        return self.gather_indexes(means, item_seq_len - 1)

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]) @ self.item_embedding.weight.T
        return nn.functional.cross_entropy(logits, interaction[self.POS_ITEM_ID])

    def full_sort_predict(self, interaction):
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]) @ self.item_embedding.weight.T


@pytest.mark.parametrize("align", ["con", "gen"])
def test_a_users_own_sequential_model_gets_rlm_in_one_line(tmp_path, align):
    MeanPooling_RLM = rlm(MeanPooling)  # all it takes
    config = Config(model=MeanPooling_RLM, dataset="tiny", command_line=False,
                    config_dict=tiny_config_dict(tmp_path, **SEQUENTIAL, loss_type="CE", align=align))
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    model = get_model("MeanPooling_RLM")(config, train_data._dataset)
    losses = model.calculate_loss(first_batch(model, train_data))
    assert len(losses) == 2 and losses[1].item() > 0
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)


def test_a_sequential_model_without_item_embedding_is_refused_with_the_fix(tmp_path):
    class Elsewhere(MeanPooling):
        def __init__(self, config, dataset):
            super().__init__(config, dataset)
            self.items = self.item_embedding
            del self.item_embedding

    with pytest.raises(ValueError, match="item_embedding.*SequentialAdapter subclass"):
        config = Config(model=rlm(Elsewhere), dataset="tiny", command_line=False,
                        config_dict=tiny_config_dict(tmp_path, **SEQUENTIAL, loss_type="CE"))
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        ensure_profiles(config, train_data._dataset)
        get_model(config["model"])(config, train_data._dataset)


def _drop_user_profiles(config, tokens):
    store = ProfileStore(config["profile_dir"])
    ids, vectors, shas = store.read_vectors("user")
    keep = [i for i, t in enumerate(ids) if t not in tokens]
    store.write_vectors("user", [ids[i] for i in keep], vectors[keep], [shas[i] for i in keep])


def test_users_without_a_profile_follow_align_users(tmp_path, caplog):
    config, dataset, train_data, _, _ = tiny_data(tmp_path, model="SASRec_RLM", **SEQUENTIAL)
    train = train_data._dataset
    dropped = train.field2id_token["user_id"][[1, 2, 3]].tolist()
    _drop_user_profiles(config, set(dropped))
    with pytest.raises(ProfileStoreError, match="3 of .* users .* have no profile"):
        get_model("SASRec_RLM")(config, train)  # align_users: all, profile_missing: error

    config["align_users"] = "profiled"
    with caplog.at_level(logging.WARNING):
        model = get_model("SASRec_RLM")(config, train)
    assert "3 of 30 users" in caplog.text and "align_users=profiled" in caplog.text
    assert not set(model.aligned_users.tolist()) & {1, 2, 3}
    batch = first_batch(model, train_data)
    seen = {}
    model.alignment.align_sequences = lambda s, users, *a, **k: seen.update(users=users) or s.sum() * 0 + 1
    model.calculate_loss(batch)
    assert not set(seen["users"].tolist()) & {1, 2, 3}
    assert len(seen["users"]) == int((batch["user_id"] > 3).sum())

    config["align_users"] = "none"
    model = get_model("SASRec_RLM")(config, train)
    losses = model.calculate_loss(first_batch(model, train_data))
    assert losses[1].item() > 0  # the items are still aligned
    seen.clear()
    model.alignment.align_sequences = lambda s, users, *a, **k: seen.update(users=users) or s.sum() * 0 + 1
    model.calculate_loss(first_batch(model, train_data))
    assert len(seen["users"]) == 0


def test_align_users_is_checked_when_the_config_is_built(tmp_path):
    with pytest.raises(ValueError, match="align_users"):
        Config(model="SASRec_RLM", dataset="tiny", command_line=False,
               config_dict=tiny_config_dict(tmp_path, **SEQUENTIAL, align_users="some"))


# -- RecBole's defaults: CE without negative sampling ------------------------------------------------


@pytest.mark.parametrize("model", ["SASRec", "SASRec_RLM", "GRU4Rec_RLM", "BERT4Rec_RLM"])
def test_sequential_ce_models_need_no_extra_keys(model):
    config = Config(model=model, dataset="ml-100k", command_line=False)
    assert config["train_neg_sample_args"]["distribution"] == "none"
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["mode"]["test"] == "full"


def test_bpr_keeps_recboles_negative_sampling_and_an_explicit_setting_is_the_users():
    config = Config(model="SASRec_RLM", dataset="ml-100k", config_dict={"loss_type": "BPR"}, command_line=False)
    assert config["train_neg_sample_args"]["distribution"] == "uniform"
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(model="SASRec", dataset="ml-100k", command_line=False,
               config_dict={"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})


def test_plain_recbole_config_is_unchanged():
    from recbole.config import Config as RecBoleConfig

    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        RecBoleConfig(model="SASRec", dataset="ml-100k")


# -- no leakage under leave-one-out and prefix augmentation ------------------------------------------


def write_leak_dataset(root, users=6, shared=5):
    r"""Each user watches ``shared`` common films, then a film of their own, then two held-out films
    nobody else watches (their validation and test items): no user profile may name them."""
    folder = root / "seqleak"
    folder.mkdir()
    items, inters = ["item_id:token\tmovie_title:token_seq\tclass:token_seq"], ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for s in range(shared):
        items.append(f"c{s}\tCommon Film {s}\tDrama")
    for u in range(users):
        items += [f"o{u}\tOpening Film {u}\tComedy", f"v{u}\tHeldout Valid {u}\tHorror", f"t{u}\tHeldout Test {u}\tHorror"]
        sequence = [f"o{u}", *(f"c{(s + u) % shared}" for s in range(shared)), f"v{u}", f"t{u}"]
        inters += [f"u{u}\t{item}\t{5 - (t % 3)}\t{1000 * u + t}" for t, item in enumerate(sequence)]
    (folder / "seqleak.item").write_text("\n".join(items) + "\n")
    (folder / "seqleak.inter").write_text("\n".join(inters) + "\n")


@pytest.mark.parametrize("max_length", [50, 3])  # 3: prefixes are truncated to their last 3 items
def test_no_user_profile_names_a_held_out_item(tmp_path, max_length):
    write_leak_dataset(tmp_path)
    config = Config(model="SASRec_RLM", dataset="seqleak", command_line=False, config_dict={
        **tiny_config_dict(tmp_path, **SEQUENTIAL), "data_path": str(tmp_path), "MAX_ITEM_LIST_LENGTH": max_length,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]}, "profile_max_items": 50,
    })
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    profiles = {r["id"]: r["profile"] for r in ProfileStore(config["profile_dir"]).read_records("user").values()}
    assert len(profiles) == 6
    for user, text in profiles.items():
        assert "Heldout" not in text, text
        u = user[1:]
        assert f"Opening Film {u}" in text  # the sequence's first item is a training item too
        assert all(f"Common Film {s}" in text for s in range(5))
    # The held-out items are the evaluation targets: the split is what the test assumes.
    for data, prefix in ((valid_data, "v"), (test_data, "t")):
        targets = data._dataset.field2id_token["item_id"][data._dataset.inter_feat["item_id"].numpy()]
        assert sorted(targets.tolist()) == sorted(f"{prefix}{u}" for u in range(6))
    get_model("SASRec_RLM")(config, train_data._dataset)  # the store is this split's


# -- through the plugin's entry points ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["SASRec", "SASRec_RLM"])
def test_runs_through_the_plugin_with_no_extra_keys_and_reloads(tmp_path, model):
    import glob

    from recbole_llm import load_data_and_model, run_recbole_llm

    config_dict = tiny_config_dict(tmp_path, **SEQUENTIAL)
    result = run_recbole_llm(model, "tiny", config_dict=config_dict)  # no train_neg_sample_args
    assert 0.0 <= result["test_result"]["recall@5"] <= 1.0
    (checkpoint,) = glob.glob(str(tmp_path / "saved" / f"{model}-*.pth"))
    config, reloaded, _, _, _, test_data = load_data_and_model(checkpoint)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, reloaded)
    assert trainer.evaluate(test_data, load_best_model=False, show_progress=False) == result["test_result"]


def test_sequential_rlm_defaults_cap_gens_reconstructions_and_a_user_setting_wins():
    assert Config(model="SASRec_RLM", dataset="ml-100k", command_line=False)["mask_sample_size"] == 512
    assert Config(model="LightGCN_RLM", dataset="ml-100k", command_line=False)["mask_sample_size"] == 64  # the graph models' bound
    sequential = Config(model="SASRec_RLM", dataset="ml-100k", command_line=False)
    # Sequential Con keeps the form it was measured with (results/ml-100k-sequential.md).
    assert (sequential["align_user_negatives"], sequential["align_sample_size"], sequential["profile_reduce_dim"]) == ("all", None, None)
    config = Config(model="GRU4Rec_RLM", dataset="ml-100k", config_dict={"mask_sample_size": None}, command_line=False)
    assert config["mask_sample_size"] is None


def test_cold_start_is_refused_on_a_sequential_model():
    # Sequential scoring is not a dot product of embedding rows: refused when the Config is built.
    from recbole_llm import Config

    for model in ("SASRec_RLM", "SASRec"):
        with pytest.raises(ValueError, match=f"cold_start=knn: {model} is sequential"):
            Config(model=model, dataset="ml-100k", config_dict={"cold_start": "knn"}, command_line=False)


def test_group_metrics_by_history_length_work_for_sequential_models(tmp_path):
    # Metrics by sequence length: the group metrics' history buckets over a sequential split, where a
    # user's training history is the number of training rows (targets) of their sequence.
    config, model, train_data, valid_data, test_data = make_model(
        tmp_path, "SASRec_RLM", align="con", metrics=["Recall", "NDCG", "HistoryRecall", "HistoryNDCG"],
        group_history_buckets=[8, 12], metric_decimal_place=6,
    )
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    counts = torch.bincount(train_data.dataset.inter_feat["user_id"], minlength=train_data.dataset.user_num)
    history = counts[test_data.dataset.inter_feat["user_id"]]  # one test item per user (leave-one-out)
    sizes = {"1-8": ((history >= 1) & (history <= 8)).sum().item(), "9-12": ((history >= 9) & (history <= 12)).sum().item(),
             "13+": (history >= 13).sum().item()}
    assert sum(sizes.values()) == len(history) and sizes["9-12"]  # the tiny users have 9 training rows each
    for measure in ("recall", "ndcg"):
        # Every tested user is in exactly one bucket: the buckets' means, weighted by their user counts,
        # are the overall mean.
        weighted = sum(size * result[f"history{measure}[{bucket}]@5"] for bucket, size in sizes.items() if size)
        assert weighted / len(history) == pytest.approx(result[f"{measure}@5"], abs=1e-5)
        assert all(result[f"history{measure}[{bucket}]@5"] != result[f"history{measure}[{bucket}]@5"]
                   for bucket, size in sizes.items() if not size)  # nan: nobody in it


def test_align_bias_init_reaches_a_sequential_models_alignment(tmp_path):
    _, model, *_ = make_model(tmp_path, "SASRec_RLM", align="gen", align_bias_init="pytorch")
    assert model.alignment.decoder[0].bias.abs().sum() > 0
