import os

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, tiny_config_dict, tiny_data
from recbole.model.general_recommender import SGL as RecBoleSGL
from recbole.model.general_recommender import LightGCN
from recbole.utils import init_seed

from recbole_llm import Config, get_model
from recbole_llm.model.general_recommender.lightgcn import LightGCN as PluginLightGCN
from recbole_llm.trainer import get_trainer


def make_model(tmp_path, **overrides):
    config, dataset, train_data, valid_data, test_data = tiny_data(tmp_path, **overrides)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


@pytest.mark.parametrize("align", ["con", "gen", "none"])
def test_one_epoch_smoke(tmp_path, align):
    config, model, train_data, valid_data, test_data = make_model(tmp_path, align=align)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    before = model.user_embedding.weight.detach().clone()
    best_score, _ = trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert 0.0 <= result["recall@5"] <= 1.0
    assert not torch.equal(before, model.user_embedding.weight)
    batch = next(iter(train_data))
    losses = model.calculate_loss(batch)
    if align == "none":
        assert isinstance(losses, torch.Tensor)
    else:
        assert isinstance(losses, tuple) and len(losses) == 2 and losses[1].item() > 0


@pytest.mark.parametrize("align", ["con", "gen"])
def test_alignment_reuses_the_steps_single_propagation(tmp_path, align, monkeypatch):
    _, model, train_data, _, _ = make_model(tmp_path, align=align)
    calls = []
    original = torch.sparse.mm
    monkeypatch.setattr(torch.sparse, "mm", lambda *a: calls.append(1) or original(*a))
    model.calculate_loss(next(iter(train_data)))
    assert len(calls) == model.n_layers  # one propagation: n_layers sparse products


def test_gen_masks_ego_embeddings_only_inside_a_training_step(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="gen", mask_ratio=0.5)
    plain = model.get_ego_embeddings()
    assert torch.equal(plain, torch.cat([model.user_embedding.weight, model.item_embedding.weight]))
    from recbole_llm.model.rlm import _Step

    model._step = _Step()
    masked = model.get_ego_embeddings()
    seeds = model._step.seeds
    assert seeds is not None and len(seeds) == int(len(model.mask_candidates) * 0.5)
    assert 0 not in seeds.tolist() and model.n_users not in seeds.tolist()  # padding rows never masked
    assert torch.allclose(masked[seeds], model.alignment.mask_token.expand(len(seeds), -1))
    model._step = None
    assert torch.equal(model.get_ego_embeddings(), plain)


def test_gen_reads_its_sample_size_from_the_config(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="gen", mask_sample_size=8)
    assert model.alignment.sample_size == 8
    decoded = []
    model.alignment.decoder.register_forward_hook(lambda module, inputs, output: decoded.append(len(inputs[0])))
    model.calculate_loss(next(iter(train_data)))
    assert decoded == [8]


def test_con_reads_its_sample_size_and_reduced_profiles_from_the_config(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="con", align_user_negatives="all", align_sample_size=4, profile_reduce_dim=8)
    assert model.alignment.sample_size == 4
    assert model.node_profile.shape[1] == 8 and model.alignment.projector[0].in_features == 8
    projected = []
    model.alignment.projector.register_forward_hook(lambda module, inputs, output: projected.append(len(inputs[0])))
    losses = model.calculate_loss(next(iter(train_data)))
    assert projected[0] <= 8 and losses[1].item() > 0  # at most 4 positive + 4 negative distinct items


def test_gen_reconstructs_the_reduced_profiles(tmp_path):
    _, model, train_data, _, _ = make_model(tmp_path, align="gen", profile_reduce_dim=8)
    assert model.node_profile.shape[1] == 8 and model.alignment.decoder[2].out_features == 8
    assert model.calculate_loss(next(iter(train_data)))[1].item() > 0


def test_profiles_are_buffers_not_parameters_nor_checkpointed(tmp_path):
    _, model, _, _, _ = make_model(tmp_path, align="con", profile_reduce_dim=None)
    assert "node_profile" in dict(model.named_buffers())
    assert all("profile" not in name for name, _ in model.named_parameters())
    assert all("profile" not in key for key in model.state_dict())
    assert model.user_profile.shape == (model.n_users, 384) and model.item_profile.shape == (model.n_items, 384)
    moved = model.to(torch.float64)
    assert moved.node_profile.dtype == torch.float64  # moves with .to()


def test_predictions_are_the_base_models(tmp_path):
    config, model, train_data, _, test_data = make_model(tmp_path, align="con")
    base = LightGCN(config, train_data._dataset)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("alignment.")})
    interaction, *_ = next(iter(test_data))
    model.eval(), base.eval()
    assert torch.allclose(model.full_sort_predict(interaction), base.full_sort_predict(interaction))
    # cold_start: none (the default) hands predict and full_sort_predict to the base unchanged.
    pairs = {"user_id": interaction["user_id"], "item_id": torch.arange(1, len(interaction) + 1)}
    assert torch.equal(model.predict(pairs), base.predict(pairs))


def test_the_defaults_bound_the_alignments_cost_and_one_file_restores_rlmrecs_form(tmp_path):
    _, con, _, _, _ = make_model(tmp_path, align="con")
    _, gen, _, _, _ = make_model(tmp_path, align="gen")
    assert (con.alignment.user_negatives, con.alignment.sample_size, con.node_profile.shape[1]) == ("batch", 128, 64)
    # Gen reconstructs the whole vectors (profile_reduce_dim: auto): the tiny store's are 384-d.
    assert (gen.alignment.sample_size, gen.node_profile.shape[1]) == (64, 384)
    exact = {"config_file_list": [os.path.join(REPO, "properties", "rlmrec-exact.yaml")]}
    config = Config(model="LightGCN_RLM", dataset="tiny", config_dict=tiny_config_dict(tmp_path), command_line=False, **exact)
    assert (config["align_user_negatives"], config["align_sample_size"], config["mask_sample_size"], config["profile_reduce_dim"]) == (
        "all", None, None, None)


def test_default_weights_and_temperatures_follow_the_alignment(tmp_path):
    _, con, _, _, _ = make_model(tmp_path, align="con")
    _, gen, _, _, _ = make_model(tmp_path, align="gen")
    assert (con.align_weight, con.alignment.temperature) == (0.01, 0.2)
    assert (gen.align_weight, gen.alignment.temperature) == (0.1, 0.5)
    _, tuned, _, _, _ = make_model(tmp_path, align="con", align_weight=0.3, align_temperature=0.7)
    assert (tuned.align_weight, tuned.alignment.temperature) == (0.3, 0.7)


def test_unknown_align_is_refused(tmp_path):
    with pytest.raises(ValueError, match="align=.contrastive.: must be one of con, gen, none"):
        make_model(tmp_path, align="contrastive")


def test_lightgcn_layer_combination_mean_is_recboles_and_sum_adds_the_layers(tmp_path):
    config, model, train_data, _, test_data = make_model(tmp_path, model="LightGCN", n_layers=2)
    assert type(model) is get_model("LightGCN") and isinstance(model, LightGCN) and model.layer_combination == "mean"
    users, items = model.forward()
    recbole_users, recbole_items = LightGCN.forward(model)
    assert torch.equal(users, recbole_users) and torch.equal(items, recbole_items)

    config, summed, *_ = make_model(tmp_path, model="LightGCN", n_layers=2, layer_combination="sum")
    summed.load_state_dict(model.state_dict())
    ego = summed.get_ego_embeddings()
    layer1 = torch.sparse.mm(summed.norm_adj_matrix, ego)
    expected = torch.split(ego + layer1 + torch.sparse.mm(summed.norm_adj_matrix, layer1), [summed.n_users, summed.n_items])
    users, items = summed.forward()
    assert torch.allclose(users, expected[0], atol=1e-6) and torch.allclose(items, expected[1], atol=1e-6)
    # The same ranking: every score is (n_layers + 1)^2 times the mean's.
    interaction, *_ = next(iter(test_data))
    model.eval(), summed.eval()
    assert torch.allclose(summed.full_sort_predict(interaction), 9 * model.full_sort_predict(interaction), atol=1e-5)


@pytest.mark.parametrize("align", ["con", "gen"])
def test_lightgcn_rlm_trains_with_the_layer_sum(tmp_path, align):
    config, model, train_data, *_ = make_model(tmp_path, align=align, layer_combination="sum")
    interaction = next(iter(train_data))
    *base_losses, alignment = model.calculate_loss(interaction)
    (sum(base_losses) + alignment).backward()
    assert alignment.item() > 0 and model.user_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("key, value", [("layer_combination", "max"), ("edge_dropout", 1.0), ("edge_dropout", -0.1), ("reg_scope", "params")])
def test_bad_lightgcn_training_keys_are_refused_by_the_config(key, value):
    with pytest.raises(ValueError, match=f"{key}="):
        Config(model="LightGCN", dataset="ml-100k", config_dict={key: value}, command_line=False)


def test_lightgcn_defaults_train_as_recboles_lightgcn(tmp_path):
    config, model, train_data, *_ = make_model(tmp_path, model="LightGCN", reg_weight=0.1)
    assert (config["edge_dropout"], config["reg_scope"]) == (0.0, "batch")
    model.train()
    assert model.training_adjacency() is model.norm_adj_matrix  # no random draw, RecBole's graph
    interaction = next(iter(train_data))
    assert torch.equal(model.calculate_loss(interaction), LightGCN.calculate_loss(model, interaction))


def test_edge_dropout_drops_a_fresh_share_of_the_graph_while_training_only(tmp_path):
    _, model, *_ = make_model(tmp_path, model="LightGCN", edge_dropout=0.2)
    whole = model.norm_adj_matrix.coalesce()
    values = dict(zip(map(tuple, whole.indices().T.tolist()), whole.values().tolist()))
    model.train()
    first, second = model.training_adjacency().coalesce(), model.training_adjacency().coalesce()
    for sample in (first, second):
        assert 0.7 * whole._nnz() < sample._nnz() < 0.9 * whole._nnz()
        # The kept entries keep their values: not rescaled by 1 / 0.8 (RLMRec's SpAdjEdgeDrop).
        kept = dict(zip(map(tuple, sample.indices().T.tolist()), sample.values().tolist()))
        assert all(values[position] == value for position, value in kept.items())
    assert not torch.equal(first.indices(), second.indices())  # a fresh draw per step
    model.eval()
    assert model.training_adjacency() is model.norm_adj_matrix
    users, items = model.forward()
    recbole_users, recbole_items = LightGCN.forward(model)
    assert torch.equal(users, recbole_users) and torch.equal(items, recbole_items)


@pytest.mark.parametrize("align", ["none", "gen"])
def test_reg_scope_all_regularises_every_parameter(tmp_path, align):
    model_name = "LightGCN" if align == "none" else "LightGCN_RLM"
    _, model, train_data, *_ = make_model(tmp_path, model=model_name, align=align, reg_scope="all", reg_weight=0.5)
    interaction = next(iter(train_data))
    if align == "gen":
        model.alignment.mask_token.data.fill_(3.0)  # the mask token is regularised too, as RLMRec's reg_params
    model.eval()  # the same propagation for both sides (Gen masks only inside calculate_loss's step)
    user_all, item_all = LightGCN.forward(model)
    user = user_all[interaction["user_id"]]
    bpr = model.mf_loss(
        (user * item_all[interaction["item_id"]]).sum(1), (user * item_all[interaction["neg_item_id"]]).sum(1)
    )
    squares = sum(parameter.detach().square().sum().item() for parameter in model.parameters())
    assert len(list(model.parameters())) == (2 if align == "none" else 2 + 1 + 4)  # tables; mask token, decoder
    assert PluginLightGCN.calculate_loss(model, interaction).item() == pytest.approx(float(bpr) + 0.5 * squares, rel=1e-5)


def test_sgl_defaults_train_as_recboles_sgl(tmp_path):
    config, model, train_data, *_ = make_model(tmp_path, model="SGL", reg_weight=0.1)
    assert type(model) is get_model("SGL") and isinstance(model, RecBoleSGL)
    assert (config["layer_combination"], config["view_sampling"], config["loss_reduction"]) == ("mean", "epoch", "sum")
    assert (config["ssl_neg_items"], config["reg_scope"]) == (False, "batch")
    model.train()  # RecBole's SGL draws the epoch's two views here
    assert model.views() == (model.sub_graph1, model.sub_graph2)
    users, items = model.forward(model.train_graph)
    recbole_users, recbole_items = RecBoleSGL.forward(model, model.train_graph)
    assert torch.equal(users, recbole_users) and torch.equal(items, recbole_items)
    interaction = next(iter(train_data))
    assert torch.allclose(model.calculate_loss(interaction), RecBoleSGL.calculate_loss(model, interaction), rtol=1e-6)


def test_sgl_rlmrec_keys_give_rlmrecs_loss(tmp_path):
    r"""RLMRec's SGL loss (encoder/models/general_cf/sgl.py), written out independently: BPR and
    InfoNCE averaged over the batch, the negatives' views contrasted too, all parameters regularised."""
    keys = {"loss_reduction": "mean", "ssl_neg_items": True, "reg_scope": "all", "layer_combination": "sum"}
    _, model, train_data, *_ = make_model(tmp_path, model="SGL", reg_weight=0.5, ssl_weight=0.3, ssl_tau=0.2, **keys)
    model.train()
    interaction = next(iter(train_data))
    user, pos, neg = interaction["user_id"], interaction["item_id"], interaction["neg_item_id"]
    with torch.no_grad():
        main, view1, view2 = (model.forward(graph) for graph in (model.train_graph, model.sub_graph1, model.sub_graph2))

        def info_nce(side, rows):  # cross-entropy of each row's view 1 against every row of view 2
            anchor, others = F.normalize(view1[side][rows], dim=1), F.normalize(view2[side], dim=1)
            return F.cross_entropy(anchor @ others.T / 0.2, rows, reduction="sum")

        bpr = -F.logsigmoid((main[0][user] * (main[1][pos] - main[1][neg])).sum(dim=1)).mean()
        ssl = (info_nce(0, user) + info_nce(1, pos) + info_nce(1, neg)) / len(user)
        squares = sum(parameter.square().sum() for parameter in model.parameters())
        expected = bpr + 0.5 * squares + 0.3 * ssl
        assert model.calculate_loss(interaction).item() == pytest.approx(expected.item(), rel=1e-5)
        # The layer sum: ego + the n_layers propagations.
        ego, layer = model.get_ego_embeddings(), model.get_ego_embeddings()
        total = ego.clone()
        for _ in range(model.n_layers):
            layer = torch.sparse.mm(model.train_graph, layer)
            total += layer
        assert torch.allclose(torch.cat(main), total, atol=1e-6)


def test_sgl_step_views_drop_a_fresh_share_of_the_normalised_graph(tmp_path):
    _, model, *_ = make_model(tmp_path, model="SGL", view_sampling="step", drop_ratio=0.2)
    model.train()
    assert not hasattr(model, "sub_graph1")  # no per-epoch views drawn
    whole = model.train_graph.coalesce()
    values = dict(zip(map(tuple, whole.indices().T.tolist()), whole.values().tolist()))
    first, second = (view.coalesce() for view in model.views())
    for view in (first, second):
        assert 0.7 * whole._nnz() < view._nnz() < 0.9 * whole._nnz()
        kept = dict(zip(map(tuple, view.indices().T.tolist()), view.values().tolist()))
        assert all(values[position] == value for position, value in kept.items())  # not renormalised
    assert not torch.equal(first.indices(), second.indices())
    assert not torch.equal(model.views()[0].coalesce().indices(), first.indices())  # fresh per step


def test_sgl_step_views_need_edge_dropout(tmp_path):
    with pytest.raises(ValueError, match="view_sampling=step .* type='ND'"):
        make_model(tmp_path, model="SGL", view_sampling="step", type="ND")


@pytest.mark.parametrize("key, value", [("view_sampling", "batch"), ("loss_reduction", "avg"), ("ssl_neg_items", "yes"), ("mask_views", "main")])
def test_bad_sgl_training_keys_are_refused_by_the_config(key, value):
    with pytest.raises(ValueError, match=f"{key}="):
        Config(model="SGL", dataset="ml-100k", config_dict={key: value}, command_line=False)


@pytest.mark.parametrize("align", ["con", "gen"])
def test_sgl_rlm_trains_with_rlmrecs_sgl(tmp_path, align):
    keys = {"loss_reduction": "mean", "ssl_neg_items": True, "reg_scope": "all", "layer_combination": "sum", "view_sampling": "step"}
    _, model, train_data, *_ = make_model(tmp_path, model="SGL_RLM", align=align, **keys)
    assert isinstance(model, get_model("SGL")) and model.view_sampling == "step"
    model.train()
    *base_losses, alignment = model.calculate_loss(next(iter(train_data)))
    (sum(base_losses) + alignment).backward()
    assert alignment.item() > 0 and model.user_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("align", ["con", "gen"])
def test_align_bias_init_reaches_the_alignment_mlp(tmp_path, align):
    _, zeros, *_ = make_model(tmp_path, align=align)
    _, rlmrecs, *_ = make_model(tmp_path, align=align, align_bias_init="pytorch")
    mlp = {"con": lambda model: model.alignment.projector, "gen": lambda model: model.alignment.decoder}[align]
    assert mlp(zeros)[0].bias.abs().sum() == 0 and mlp(rlmrecs)[0].bias.abs().sum() > 0
