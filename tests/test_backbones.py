"""Every supported backbone, plain and with RLM: a one-epoch smoke test on tiny data, the
alignment's guarantees (main view reused, no extra propagation, Gen masks only the main view), a
user's own model getting ``_RLM``, and the new models' pieces on a hand-made graph."""

import inspect
import math

import pytest
import torch
from recbole.data import create_dataset
from recbole.utils import init_seed

from conftest import tiny_data
from recbole_llm import Config, get_model
from recbole_llm.model.cold_start import ColdStartRecommender
from recbole_llm.trainer import get_trainer
from recbole_llm.model.general_recommender.graph_base import normalized_adjacency

RECBOLE_BASES = ["LightGCN", "SGL", "NGCF", "NCL", "BPR", "SpectralCF", "DGCF"]
PLUGIN_BASES = ["SimGCL", "GCCF", "DCCF", "AutoCF"]
BASES = RECBOLE_BASES + PLUGIN_BASES
# Per-base settings for tiny data: NCL's 1000 clusters need >= 1000 users; no dropout where a test
# compares two forward passes.
TINY = {"NCL": {"num_clusters": 4}, "NGCF": {"message_dropout": 0.0}}


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    # One profile store for the module: every test below uses the same tiny split.
    return str(tmp_path_factory.mktemp("profiles") / "tiny")


def make(tmp_path, profile_dir, base, align=None, **overrides):
    model_name = base if align is None else base + "_RLM"
    settings = {**TINY.get(base, {}), "profile_dir": profile_dir, **overrides}
    if align is not None:
        settings["align"] = align
    config, _, train_data, valid_data, test_data = tiny_data(tmp_path, model=model_name, **settings)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def ready_for_a_step(model):
    model.train()  # SGL builds its sub-graphs here
    if hasattr(model, "e_step"):
        model.e_step()  # NCL's clusters (its trainer runs this each epoch)


# --------------------------------------------------------------------------------------------
# Smoke: every <Base> and <Base>_RLM (con, gen) trains one epoch and evaluates.


@pytest.mark.parametrize("align", [None, "con", "gen"])
@pytest.mark.parametrize("base", BASES)
def test_one_epoch_smoke(tmp_path, profile_dir, base, align):
    config, model, train_data, valid_data, test_data = make(tmp_path, profile_dir, base, align)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if base == "NCL":
        assert type(trainer).__name__ == "NCLTrainer"  # <Base>_RLM keeps its base's trainer
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert 0.0 <= result["recall@5"] <= 1.0 and 0.0 <= result["ndcg@5"] <= 1.0
    assert not torch.equal(before["user_embedding.weight"], model.user_embedding.weight)

    ready_for_a_step(model)
    losses = model.calculate_loss(next(iter(train_data)))
    losses = losses if isinstance(losses, tuple) else (losses,)
    assert all(torch.isfinite(loss).all() for loss in losses)
    if align is None:
        assert not hasattr(model, "alignment")
    else:
        # The alignment, logged as its own column: last, except for NCL, whose trainer drops its
        # last term (the prototype loss) during warm-up and must not drop the alignment instead.
        align_loss = losses[-2] if base == "NCL" else losses[-1]
        assert align_loss.item() > 0
        plain_terms = 3 if base == "NCL" else 2 if base in ("SimGCL", "DCCF", "AutoCF") else 1
        assert len(losses) == plain_terms + 1
        changed = [n for n, p in model.named_parameters() if n.startswith("alignment.") and not torch.equal(before[n], p)]
        assert changed, "the alignment's parameters were not trained"


# --------------------------------------------------------------------------------------------
# The alignment's guarantees on every backbone.


def count_calls(monkeypatch, model, step):
    r"""(sparse products, forward calls) of one ``step()``."""
    counts = {"sparse": 0, "forward": 0}
    sparse_mm, forward = torch.sparse.mm, model.forward

    def counting_mm(*args):
        counts["sparse"] += 1
        return sparse_mm(*args)

    def counting_forward(*args, **kwargs):
        counts["forward"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(torch.sparse, "mm", counting_mm)
    monkeypatch.setattr(model, "forward", counting_forward)
    step()
    monkeypatch.undo()
    return counts


@pytest.mark.parametrize("align", ["con", "gen"])
@pytest.mark.parametrize("base", BASES)
def test_alignment_adds_no_propagation(tmp_path, profile_dir, monkeypatch, base, align):
    _, plain, train_data, _, _ = make(tmp_path, profile_dir, base)
    _, aligned, _, _, _ = make(tmp_path, profile_dir, base, align)
    batch = next(iter(train_data))
    for model in (plain, aligned):
        ready_for_a_step(model)
    base_counts = count_calls(monkeypatch, plain, lambda: plain.calculate_loss(batch))
    rlm_counts = count_calls(monkeypatch, aligned, lambda: aligned.calculate_loss(batch))
    assert rlm_counts == base_counts
    assert base_counts["forward"] >= 1


# The main view of each base, recomputed after the step (parameters unchanged, no dropout).
MAIN_VIEW = {
    "SGL": lambda m: m.forward(m.train_graph),
    "SimGCL": lambda m: m.forward(perturbed=False),
    "AutoCF": lambda m: m.forward(m.encoder_adj, m.decoder_edges),
    "BPR": lambda m: (m.user_embedding.weight, m.item_embedding.weight),
}


@pytest.mark.parametrize("base", BASES)
def test_con_aligns_the_main_views_final_embeddings(tmp_path, profile_dir, monkeypatch, base):
    config, model, train_data, _, _ = make(tmp_path, profile_dir, base, "con")
    ready_for_a_step(model)
    seen = {}
    alignment_forward = model.alignment.forward

    def spy(user_all, item_all, *args):
        seen["user"], seen["item"] = user_all.detach().clone(), item_all.detach().clone()
        return alignment_forward(user_all, item_all, *args)

    monkeypatch.setattr(model.alignment, "forward", spy)
    model.calculate_loss(next(iter(train_data)))
    with torch.no_grad():
        users, items = MAIN_VIEW.get(base, lambda m: m.forward()[:2])(model)[:2]
    width = model.rlm_adapter.embedding_dim(model, config)
    assert seen["user"].shape == (model.n_users, width) and seen["item"].shape == (model.n_items, width)
    assert torch.allclose(seen["user"], users, atol=1e-6) and torch.allclose(seen["item"], items, atol=1e-6)


@pytest.mark.parametrize("base", [b for b in BASES if b != "BPR"])  # BPR masks nothing: test below
def test_gen_masks_the_main_view_only(tmp_path, profile_dir, monkeypatch, base):
    config, model, train_data, _, _ = make(tmp_path, profile_dir, base, "gen", mask_ratio=0.5)
    ready_for_a_step(model)
    calls = []
    mask_ego = model.mask_ego

    def spy(ego):
        masked = mask_ego(ego)
        calls.append(not torch.equal(masked, ego))
        return masked

    monkeypatch.setattr(model, "mask_ego", spy)
    model.calculate_loss(next(iter(train_data)))
    assert calls[0] and not any(calls[1:])  # the first ego call of the step is masked, no other
    expected_ego_calls = {"SGL": 3, "SimGCL": 3}.get(base, 1)  # main view + two augmented views
    assert len(calls) == expected_ego_calls
    assert model.alignment.mask_token.shape == (1, config["embedding_size"])
    assert model.alignment.decoder[0].in_features == model.rlm_adapter.embedding_dim(model, config)


def test_concatenating_backbones_align_their_full_width(tmp_path, profile_dir):
    widths = {"NGCF": 8 + 64 * 3, "SpectralCF": 8 * 5, "GCCF": 8 * 3}  # tiny: embedding_size 8
    for base, width in widths.items():
        _, model, _, _, _ = make(tmp_path, profile_dir, base, "con")
        assert model.alignment.projector[-1].out_features == width
        user_all, item_all = model.forward()[:2]
        assert user_all.shape[1] == item_all.shape[1] == width


def test_predictions_stay_the_base_models(tmp_path, profile_dir):
    for base in ["SGL", "SimGCL", "DCCF", "AutoCF", "BPR"]:
        _, model, _, _, _ = make(tmp_path, profile_dir, base, "gen")
        cls = get_model(base)
        # Without cold_start the cold-start mixin hands both calls to the base's own methods.
        after_mixin = super(ColdStartRecommender, model)
        assert after_mixin.full_sort_predict.__func__ is cls.full_sort_predict and after_mixin.predict.__func__ is cls.predict


def test_gen_on_bpr_reconstructs_drawn_nodes_without_masking(tmp_path, profile_dir, monkeypatch):
    config, model, train_data, _, _ = make(tmp_path, profile_dir, "BPR", "gen")
    monkeypatch.setattr(model.alignment, "mask", None)  # a BPR step must not build a masked table
    drawn = []
    draw = model.alignment.draw
    monkeypatch.setattr(model.alignment, "draw", lambda candidates: drawn.append(draw(candidates)) or drawn[-1])
    batch = next(iter(train_data))
    losses = model.calculate_loss(batch)
    assert len(drawn) == 1 and len(drawn[0]) == max(int(len(model.mask_candidates) * config["mask_ratio"]), 1)
    losses[-1].backward()
    # The alignment reaches the drawn nodes' own embeddings (users then items in node order).
    grad = torch.cat([model.user_embedding.weight.grad, model.item_embedding.weight.grad]).abs().sum(1)
    assert (grad[drawn[0]] > 0).all()


# --------------------------------------------------------------------------------------------
# A user's own RecBole model gets _RLM in a few lines.


def make_my_model_aligned():
    from recbole_llm import EmbeddingAdapter, rlm

    class DictOutput(EmbeddingAdapter):  # my forward() returns a dict
        def final_embeddings(self, model, output):
            return output["users"], output["items"]

    return rlm(MyGraphModel, DictOutput())


class MyGraphModel:  # replaced below by a RecBole model (defined lazily to keep imports light)
    pass


def _define_my_graph_model():
    from recbole.model.abstract_recommender import GeneralRecommender
    from recbole.model.loss import BPRLoss
    from recbole.utils import InputType

    class MyGraphModel(GeneralRecommender):
        r"""A one-layer graph model a user might write: forward() returns a dict."""

        input_type = InputType.PAIRWISE

        def __init__(self, config, dataset):
            super().__init__(config, dataset)
            self.user_embedding = torch.nn.Embedding(self.n_users, config["embedding_size"])
            self.item_embedding = torch.nn.Embedding(self.n_items, config["embedding_size"])
            pairs = dataset.inter_matrix(form="csr").tocoo()
            users, items = torch.from_numpy(pairs.row).long(), torch.from_numpy(pairs.col).long()
            self.graph = normalized_adjacency(self.n_users, self.n_items, users, items)
            self.loss = BPRLoss()

        def get_ego_embeddings(self):
            return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

        def forward(self):
            ego = self.get_ego_embeddings()
            users, items = torch.split(ego + torch.sparse.mm(self.graph, ego), [self.n_users, self.n_items])
            return {"users": users, "items": items}

        def calculate_loss(self, interaction):
            out = self.forward()
            user = out["users"][interaction[self.USER_ID]]
            pos, neg = out["items"][interaction[self.ITEM_ID]], out["items"][interaction[self.NEG_ITEM_ID]]
            return self.loss((user * pos).sum(-1), (user * neg).sum(-1))

        def full_sort_predict(self, interaction):
            out = self.forward()
            return (out["users"][interaction[self.USER_ID]] @ out["items"].T).view(-1)

    return MyGraphModel


@pytest.mark.parametrize("align", ["con", "gen"])
def test_a_user_model_gets_rlm_in_under_ten_lines(tmp_path, profile_dir, align):
    global MyGraphModel
    MyGraphModel = _define_my_graph_model()
    source = inspect.getsource(make_my_model_aligned).strip().splitlines()[1:]  # body only
    assert len(source) < 10
    aligned = make_my_model_aligned()
    assert aligned.__name__ == "MyGraphModel_RLM" and issubclass(aligned, MyGraphModel)

    config = Config(model=aligned, dataset="tiny", config_dict=_tiny(tmp_path, profile_dir, align=align))
    init_seed(config["seed"], config["reproducibility"])
    from recbole.data import data_preparation

    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = aligned(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("alignment.")}
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    assert 0.0 <= trainer.evaluate(test_data, load_best_model=False, show_progress=False)["recall@5"] <= 1.0
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    losses = model.calculate_loss(next(iter(train_data)))
    assert isinstance(losses, tuple) and len(losses) == 2 and losses[1].item() > 0


def _tiny(tmp_path, profile_dir, **overrides):
    from conftest import tiny_config_dict

    return tiny_config_dict(tmp_path, profile_dir=profile_dir, **overrides)


# --------------------------------------------------------------------------------------------
# The new models' pieces on a hand-made graph: users u1, u2; items i1, i2, i3;
# interactions u1-i1, u1-i2, u2-i2, u2-i3. RecBole ids: users 1, 2 (0 = padding), items 1..3;
# graph nodes: users 0..2, items 3..6 (node = n_users + item id), so u1=1, u2=2, i1=4, i2=5, i3=6.

U1, U2, I1, I2, I3 = 1, 2, 4, 5, 6
R2, R6 = 1 / math.sqrt(2), 1 / math.sqrt(6)
# D^-1/2 A D^-1/2: degrees u1 2, u2 2, i1 1, i2 2, i3 1.
S_PLAIN = {(U1, I1): R2, (U1, I2): 0.5, (U2, I2): 0.5, (U2, I3): R2}
# (D+I)^-1/2 (A+I) (D+I)^-1/2: degrees + 1 = u1 3, u2 3, i1 2, i2 3, i3 2, padding nodes 1.
S_LOOP = {(U1, I1): R6, (U1, I2): 1 / 3, (U2, I2): 1 / 3, (U2, I3): R6}
S_LOOP_DIAG = {0: 1.0, U1: 1 / 3, U2: 1 / 3, 3: 1.0, I1: 0.5, I2: 1 / 3, I3: 0.5}


def dense(entries, diagonal=None, n=7):
    matrix = torch.zeros(n, n)
    for (a, b), value in entries.items():
        matrix[a, b] = matrix[b, a] = value
    for node, value in (diagonal or {}).items():
        matrix[node, node] = value
    return matrix


@pytest.fixture
def hand(tmp_path):
    folder = tmp_path / "hand"
    folder.mkdir()
    pairs = [("u1", "i1"), ("u1", "i2"), ("u2", "i2"), ("u2", "i3")]
    (folder / "hand.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in pairs))

    def build(model, **overrides):
        settings = {"data_path": str(tmp_path), "load_col": {"inter": ["user_id", "item_id"]}, "embedding_size": 2,
                    "state": "WARNING", "seed": 1, "head_num": 1, **overrides}
        config = Config(model=model, dataset="hand", config_dict=settings)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        assert dataset.field2id_token["user_id"].tolist() == ["[PAD]", "u1", "u2"]
        assert dataset.field2id_token["item_id"].tolist() == ["[PAD]", "i1", "i2", "i3"]
        return get_model(model)(config, dataset)

    return build


def set_ego(model, ego):
    with torch.no_grad():
        model.user_embedding.weight.copy_(ego[: model.n_users])
        model.item_embedding.weight.copy_(ego[model.n_users :])


def test_normalized_adjacency_by_hand():
    users, items = torch.tensor([1, 1, 2, 2]), torch.tensor([1, 2, 2, 3])
    plain = normalized_adjacency(3, 4, users, items).to_dense()
    assert torch.allclose(plain, dense(S_PLAIN), atol=1e-6)
    looped = normalized_adjacency(3, 4, users, items, self_loop=True).to_dense()
    assert torch.allclose(looped, dense(S_LOOP, S_LOOP_DIAG), atol=1e-6)


def test_models_share_one_graph_builder_and_deduplicate_pairs(hand):
    for name, expected in [("SimGCL", dense(S_PLAIN)), ("DCCF", dense(S_PLAIN)), ("GCCF", dense(S_LOOP, S_LOOP_DIAG)),
                           ("AutoCF", dense(S_LOOP, S_LOOP_DIAG))]:
        model = hand(name)
        assert torch.allclose(model.norm_adj_matrix.to_dense(), expected, atol=1e-6), name


def test_gccf_concatenates_linear_propagations(hand):
    model = hand("GCCF", n_layers=2)
    ego = torch.randn(7, 2)
    set_ego(model, ego)
    s = dense(S_LOOP, S_LOOP_DIAG)
    expected = torch.cat([ego, s @ ego, s @ s @ ego], dim=1)
    users, items = model.forward()
    assert users.shape == (3, 6) and torch.allclose(torch.cat([users, items]), expected, atol=1e-6)
    assert model.final_embedding_size == 6

    weighted = hand("GCCF", n_layers=1, layer_weights=True)
    set_ego(weighted, ego)
    w = weighted.transforms[0].weight.detach()
    users, items = weighted.forward()
    assert torch.allclose(torch.cat([users, items]), torch.cat([ego, (s @ ego) @ w.T], dim=1), atol=1e-6)


def test_simgcl_main_view_leaves_out_the_ego_layer(hand):
    model = hand("SimGCL", n_layers=2)
    ego = torch.randn(7, 2)
    set_ego(model, ego)
    s = dense(S_PLAIN)
    users, items = model.forward()
    assert torch.allclose(torch.cat([users, items]), (s @ ego + s @ s @ ego) / 2, atol=1e-6)


def test_simgcl_noise_has_norm_eps_and_keeps_signs(hand):
    model = hand("SimGCL", eps=0.3)
    embeddings = torch.tensor([[1.0, -2.0], [-0.5, 0.25], [3.0, 1.0]])
    noise = model.perturb(embeddings) - embeddings
    assert torch.allclose(noise.norm(dim=1), torch.full((3,), 0.3), atol=1e-6)
    assert (noise * torch.sign(embeddings) >= 0).all()  # same orthant as the embedding
    assert not torch.equal(model.perturb(embeddings), model.perturb(embeddings))  # random each call


def test_simgcl_contrastive_loss_by_hand(hand):
    model = hand("SimGCL", cl_temperature=0.5)
    view = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    # ids 1 and 2 (1 repeated): orthogonal rows, cos 1 to themselves and 0 to the other
    loss = model.cl_loss(view, view.clone(), torch.tensor([1, 2, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    shifted = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # view 2 of id 2 at 45 degrees
    # row 1: pos cos 1, other cos 1/sqrt2; row 2: pos cos 1/sqrt2, other cos 0; t = 0.5
    r = 1 / math.sqrt(2)
    expected = ((math.log(math.exp(2) + math.exp(2 * r)) - 2) + (math.log(math.exp(0) + math.exp(2 * r)) - 2 * r)) / 2
    assert model.cl_loss(view, shifted, torch.tensor([1, 2])).item() == pytest.approx(expected, abs=1e-6)


def test_dccf_adaptive_adjacency_by_hand(hand):
    model = hand("DCCF")
    nodes = torch.zeros(7, 2)
    nodes[U1], nodes[U2], nodes[I1], nodes[I2], nodes[I3] = (torch.tensor(v) for v in ([1.0, 0], [0, 1.0], [2.0, 0], [0, 3.0], [-1.0, 0]))
    # alpha = (cos + 1) / 2: u1-i1 1, u1-i2 0.5, u2-i2 1, u2-i3 0.5; then each row divided by its sum
    expected = torch.zeros(7, 7)
    expected[U1, I1], expected[U1, I2] = 2 / 3, 1 / 3
    expected[U2, I2], expected[U2, I3] = 2 / 3, 1 / 3
    expected[I1, U1] = 1.0
    expected[I2, U1], expected[I2, U2] = 1 / 3, 2 / 3
    expected[I3, U2] = 1.0
    weights = model.adaptive_weights(nodes)
    adjacency = torch.zeros(7, 7).index_put_((model.edge_heads, model.edge_tails), weights)
    assert torch.allclose(adjacency, expected, atol=1e-6)
    x = torch.randn(7, 3)
    assert torch.allclose(model.adaptive_propagate(nodes, x), expected @ x, atol=1e-6)


def test_dccf_intent_aggregation_by_hand(hand):
    model = hand("DCCF", intent_num=2)
    with torch.no_grad():
        model.user_intent.copy_(torch.eye(2))
        model.item_intent.copy_(2 * torch.eye(2))
    nodes = torch.zeros(7, 2)
    nodes[U1] = torch.tensor([1.0, 0.0])
    nodes[I1] = torch.tensor([0.0, 1.0])
    out = model.intent_aggregation(nodes)
    e = math.e
    assert out[U1].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)], abs=1e-6)  # softmax(e W) W^T, W = I
    assert out[I1].tolist() == pytest.approx([2 / (e**2 + 1), 2 * e**2 / (e**2 + 1)], abs=1e-6)  # W = 2I
    assert out[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)  # a zero row: uniform intents


def test_dccf_layer_sums_its_four_views(hand):
    model = hand("DCCF", n_layers=1)
    ego = torch.randn(7, 2)
    set_ego(model, ego)
    users, items, views = model.forward()
    z = dense(S_PLAIN) @ ego
    assert torch.allclose(views["gnn"][0], z, atol=1e-6)
    r = model.intent_aggregation(ego)
    assert torch.allclose(views["intent"][0], r, atol=1e-6)
    adaptive = lambda view: torch.zeros(7, 7).index_put_((model.edge_heads, model.edge_tails), model.adaptive_weights(view))  # noqa: E731
    assert torch.allclose(views["gnn_adaptive"][0], adaptive(z) @ ego, atol=1e-6)
    assert torch.allclose(views["intent_adaptive"][0], adaptive(r) @ ego, atol=1e-6)
    layer1 = z + r + views["gnn_adaptive"][0] + views["intent_adaptive"][0] + ego
    assert torch.allclose(torch.cat([users, items]), ego + layer1, atol=1e-5)


def test_dccf_contrastive_loss_by_hand(hand):
    model = hand("DCCF", cl_temperature=0.5)
    nodes = torch.zeros(7, 2)
    nodes[U1], nodes[U2], nodes[I1], nodes[I2] = (torch.tensor(v) for v in ([1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]))
    views = {name: [nodes] for name in ("gnn", "intent", "gnn_adaptive", "intent_adaptive")}
    loss = model.cl_loss(views, torch.tensor([1, 2, 2]), torch.tensor([1, 2, 1]))
    # 3 views x (users, items), each the mean over two orthogonal rows: log(1 + e^-2)
    assert loss.item() == pytest.approx(6 * math.log(1 + math.exp(-2.0)), abs=1e-5)


def test_autocf_masks_edges_within_mask_depth(hand):
    model = hand("AutoCF", mask_depth=1, keep_rate=0.0)
    encoder, (rows, cols) = model.mask_subgraphs(torch.tensor([U1]))
    # u1's edges (and self-loop) removed; the rest re-normalised: u2 deg 2+1, i2 1+1, i3 1+1, i1 alone 0+1
    expected = dense({(U2, I2): 1 / math.sqrt(6), (U2, I3): 1 / math.sqrt(6)},
                     {0: 1.0, U2: 1 / 3, 3: 1.0, I1: 1.0, I2: 0.5, I3: 0.5})
    assert torch.allclose(encoder.to_dense(), expected, atol=1e-6)
    decoder = set(zip(rows.tolist(), cols.tolist()))
    remaining = {(a, b) for a, b in zip(*expected.nonzero().T.tolist())}
    assert remaining <= decoder and {(n, n) for n in range(7)} <= decoder
    assert all(a == b == U1 for a, b in decoder - remaining)  # random edges only among masked nodes ({u1})

    deeper = hand("AutoCF", mask_depth=2, keep_rate=0.0)
    encoder, (rows, cols) = deeper.mask_subgraphs(torch.tensor([U1]))
    # depth 1 reaches i1, i2 (u1's neighbours): their edges go too; u2-i3 remains
    expected = dense({(U2, I3): 1 / 2}, {0: 1.0, U2: 0.5, 3: 1.0, I3: 0.5})
    assert torch.allclose(encoder.to_dense(), expected, atol=1e-6)
    masked = {U1, I1, I2}
    extra = set(zip(rows.tolist(), cols.tolist())) - {(a, b) for a, b in zip(*expected.nonzero().T.tolist())}
    assert extra and all(a in masked and b in masked for a, b in extra)


def test_autocf_local_global_scores(hand, monkeypatch):
    model = hand("AutoCF", seed_num=2)
    # Every node's ego embedding points the same way: its 1- and 2-hop neighbourhood agrees, s = sigmoid(1).
    monkeypatch.setattr(torch, "rand_like", lambda x: torch.full_like(x, math.exp(-1)))  # Gumbel noise 0
    scores, seeds = model.local_global_scores(torch.tensor([[1.0, 2.0]]).repeat(7, 1))
    real = [U1, U2, I1, I2, I3]
    assert scores[real].tolist() == pytest.approx([math.log(1 / (1 + math.exp(-1)))] * 5, abs=1e-5)
    assert len(seeds) == 2 and set(seeds.tolist()) <= set(real)
    # Opposite directions: u1's neighbourhood (i1, i2 and, 2 hops away, u2) points against it.
    nodes = torch.tensor([[1.0, 0.0]]).repeat(7, 1)
    nodes[U1] = torch.tensor([-1.0, 0.0])
    scores, _ = model.local_global_scores(nodes)
    assert scores[U1].item() == pytest.approx(math.log(1 / (1 + math.e)), abs=1e-5)
    # u1's sub-graph: 1 hop i1 + i2, 2 hops (not back to u1) u2, minus u1 itself (AutoCF counts u1's
    # self-loop): (0,1) + (0,1) + (1,0) - (1,0) is orthogonal to u1 = (1,0): s = sigmoid(0).
    nodes = torch.zeros(7, 2)
    nodes[U1], nodes[U2], nodes[I1], nodes[I2], nodes[I3] = (torch.tensor(v) for v in ([1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0], [1.0, 1.0]))
    scores, _ = model.local_global_scores(nodes)
    assert scores[U1].item() == pytest.approx(math.log(0.5), abs=1e-5)


def test_autocf_graph_transformer_by_hand(hand):
    from recbole_llm.model.general_recommender.autocf import GraphTransformerLayer

    layer = GraphTransformerLayer(2, 1)
    with torch.no_grad():
        for weight in (layer.q_transform, layer.k_transform, layer.v_transform):
            weight.copy_(torch.eye(2))
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = layer(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), embeddings)
    e = math.e
    # node 0 attends to itself (q.k = 1) and node 1 (q.k = 0); node 1 only to itself
    assert out[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)], abs=1e-6)
    assert out[1].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_autocf_resamples_every_fix_steps_and_sums_all_layers(hand):
    model = hand("AutoCF", fix_steps=2, n_layers=1, gt_layers=1, head_num=1)
    from recbole.data.interaction import Interaction

    batch = Interaction({"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([1, 3]), "neg_item_id": torch.tensor([3, 1])})
    model.train()
    graphs = []
    for _ in range(3):
        model.calculate_loss(batch)
        graphs.append(model.encoder_adj)
    assert graphs[0] is graphs[1] and graphs[2] is not graphs[1]
    model.train()
    assert model.sample_step == 0

    ego = torch.randn(7, 2)
    set_ego(model, ego)
    users, items = model.forward()
    s = dense(S_LOOP, S_LOOP_DIAG)
    first = s @ ego
    edges = model.norm_adj_matrix.indices()
    expected = ego + first + model.transformers[0](edges[0], edges[1], first)
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-6)


def test_autocf_loss_terms_by_hand(hand):
    model = hand("AutoCF", n_layers=1, ssl_reg=0.5, reg_weight=0.0, fix_steps=100)
    from recbole.data.interaction import Interaction

    batch = Interaction({"user_id": torch.tensor([1, 1]), "item_id": torch.tensor([1, 2]), "neg_item_id": torch.tensor([3, 3])})
    model.train()
    model.calculate_loss(batch)  # step 0: samples the masked graph
    rec, cl = model.calculate_loss(batch)  # step 1: no infomax term
    users, items = (x.detach() for x in model.forward(model.encoder_adj, model.decoder_edges))
    expected_rec = -((users[1] * items[1]).sum() + (users[1] * items[2]).sum()) / 2
    lse = lambda a, c: torch.logsumexp(a @ c.T, dim=-1)  # noqa: E731
    expected_cl = 0.5 * (lse(users[[1]], users).mean() + lse(items[[1, 2]], items).mean()) + lse(users[[1, 1]], items).mean()
    assert rec.item() == pytest.approx(expected_rec.item(), abs=1e-5)
    assert cl.item() == pytest.approx(expected_cl.item(), abs=1e-5)


@pytest.mark.parametrize("view_type", ["ED", "RW"])
def test_sgl_rlm_forward_equals_sgls(tmp_path, profile_dir, view_type):
    from recbole.model.general_recommender import SGL

    _, model, _, _, _ = make(tmp_path, profile_dir, "SGL", "gen", type=view_type)
    model.train()  # outside a training step: nothing is masked
    for graph in (model.train_graph, model.sub_graph1, model.sub_graph2):
        ours, sgls = model.forward(graph), SGL.forward(model, graph)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, sgls))


@pytest.mark.parametrize("base", ["SGL", "SimGCL"])
@pytest.mark.parametrize("mask_views", ["first", "all"])
def test_gen_masks_the_steps_first_view_or_all_its_views(tmp_path, profile_dir, base, mask_views, monkeypatch):
    _, model, train_data, _, _ = make(tmp_path, profile_dir, base, "gen", mask_views=mask_views, mask_ratio=0.3)
    ready_for_a_step(model)
    model.alignment.mask_token.data.fill_(7.0)  # masked rows are recognisable
    masked_rows, original = [], model.get_ego_embeddings

    def recording():
        ego = original()
        masked_rows.append(set((ego == 7.0).all(dim=1).nonzero().view(-1).tolist()))
        return ego

    monkeypatch.setattr(model, "get_ego_embeddings", recording)
    model.calculate_loss(next(iter(train_data)))
    assert len(masked_rows) == 3 and len(masked_rows[0]) == int(0.3 * len(model.mask_candidates))  # main view + two augmented
    assert masked_rows[1:] == ([masked_rows[0]] * 2 if mask_views == "all" else [set(), set()])


@pytest.mark.parametrize("align", ["con", "gen"])
def test_rlm_of_recboles_own_sgl_trains_with_its_forward(tmp_path, profile_dir, align, monkeypatch):
    r"""``SGL_RLM`` builds on the plugin's SGL; a user's ``rlm()`` of RecBole's SGL class still gets an
    ego method and RecBole's forward (RecBoleSGLAdapter)."""
    from recbole.model.general_recommender import SGL

    import recbole_llm.model.rlm as rlm_module
    from recbole_llm import rlm

    monkeypatch.setattr(rlm_module, "_CLASSES", dict(rlm_module._CLASSES))  # keep SGL_RLM the plugin's for later tests
    monkeypatch.setattr(rlm_module, "SGL_RLM", rlm_module.aligned_model("SGL_RLM"))
    config, _, train_data, _, _ = tiny_data(tmp_path, model="SGL_RLM", **{**TINY.get("SGL", {}), "profile_dir": profile_dir, "align": align})
    init_seed(config["seed"], config["reproducibility"])
    model = rlm(SGL)(config, train_data._dataset)
    assert not isinstance(model, get_model("SGL")) and isinstance(model, SGL)
    ready_for_a_step(model)
    ours, sgls = model.forward(model.sub_graph1), SGL.forward(model, model.sub_graph1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, sgls))
    *base_losses, alignment = model.calculate_loss(next(iter(train_data)))
    (sum(base_losses) + alignment).backward()
    assert alignment.item() > 0 and model.user_embedding.weight.grad.abs().sum() > 0


def test_gen_masks_only_nodes_with_training_interactions(tmp_path, profile_dir):
    # A masked node without neighbours cannot be reconstructed from them; in NGCF (which
    # normalises each layer) its all-zero outputs made the gradients overflow to NaN on ml-100k.
    _, model, train_data, _, _ = make(tmp_path, profile_dir, "NGCF", "gen")
    dataset = train_data._dataset
    item_field = dataset.iid_field
    without_item_1 = dataset.copy(dataset.inter_feat[dataset.inter_feat[item_field] != 1])
    candidates = set(model._real_nodes(without_item_1).tolist())
    interactions = without_item_1.inter_matrix(form="csr")
    users = {int(u) for u in interactions.getnnz(axis=1).nonzero()[0]}
    items = {model.n_users + int(i) for i in interactions.getnnz(axis=0).nonzero()[0]}
    assert candidates == users | items
    assert model.n_users + 1 not in candidates and 0 not in candidates and model.n_users not in candidates
    assert len(candidates) == model.n_users + model.n_items - 3  # only the paddings and item 1 left out


@pytest.mark.parametrize("base", BASES)
def test_cold_start_scoring_scores_warm_nodes_as_the_base(tmp_path, profile_dir, base):
    # cold_start scores with the adapter's eval_embeddings and a dot product: for warm users and
    # items that must be the base's own score (the tiny split has no cold node to replace).
    config, model, train_data, _, test_data = make(tmp_path, profile_dir, base, align="none", cold_start="knn")
    config["cold_start"] = "none"
    plain = get_model(base + "_RLM")(config, train_data._dataset)
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    interaction, *_ = next(iter(test_data))
    with torch.no_grad():
        expected = plain.full_sort_predict(interaction).view(-1)  # SGL returns [users, items], the others flat
        assert torch.allclose(model.full_sort_predict(interaction), expected, atol=1e-5)
