import math

import pytest
import torch
import torch.nn as nn

import recbole_llm.model.alignment as alignment
from recbole_llm.model.alignment import ContrastiveAlignment, GenerativeAlignment, info_nce


def test_info_nce_matches_hand_computation():
    # Row 0: cos = 0.96 to its positive (4,3), 0.8 to (0,1); t = 1.
    # Row 1: (0,2) vs positive (0,1): cos 1; vs (4,3): cos 0.6.
    anchor = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    candidates = torch.tensor([[4.0, 3.0], [0.0, 1.0]])
    loss = info_nce(anchor, candidates, temperature=1.0)
    expected = [math.log(math.exp(0.96) + math.exp(0.8)) - 0.96, math.log(math.exp(0.6) + math.exp(1.0)) - 1.0]
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)


def test_info_nce_temperature_and_candidate_weights():
    anchor = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cos/t = [2, 0]; the second candidate counted 3 times.
    loss = info_nce(anchor, candidates, 0.5, candidate_log_weight=torch.log(torch.tensor([1.0, 3.0])))
    assert loss.item() == pytest.approx(math.log(math.exp(2) + 3) - 2, abs=1e-6)


def test_info_nce_positive_index_with_candidate_weights():
    # Row 0's positive is candidate 1 (counted 3 times in the denominator, once in the numerator);
    # row 1's is candidate 0. cos/t: row 0 [2, 0], row 1 [0, 2].
    anchor = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.log(torch.tensor([1.0, 3.0]))
    loss = info_nce(anchor, candidates, 0.5, positive=torch.tensor([1, 0]), candidate_log_weight=weight)
    expected = [math.log(math.exp(2) + 3) - 0, math.log(1 + 3 * math.exp(2)) - 0]
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)


def test_info_nce_batched_equals_each_group_alone():
    torch.manual_seed(0)
    anchor, candidates = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    batched = info_nce(anchor, candidates, 0.2)
    assert batched.shape == (3, 5)
    for g in range(3):
        assert torch.allclose(batched[g], info_nce(anchor[g], candidates[g], 0.2), atol=1e-6)


def _rlmrec_con_reference(align, user_all, item_all, user, pos, neg, user_profile, item_profile, t):
    """RLMRec-Con written row by row: users vs ALL users' projected profiles, items vs in-batch."""
    proj = align.projector
    all_users = proj(user_profile[1:])

    def row_loss(anchor, positive, candidates):
        cos = lambda a, b: torch.dot(a, b) / (a.norm() * b.norm())  # noqa: E731
        denom = sum(torch.exp(cos(anchor, c) / t) for c in candidates)
        return -torch.log(torch.exp(cos(anchor, positive) / t) / denom)

    pos_p, neg_p = proj(item_profile[pos]), proj(item_profile[neg])
    total = 0.0
    for b in range(len(user)):
        total = total + row_loss(user_all[user[b]], all_users[user[b] - 1], all_users)
        total = total + row_loss(item_all[pos[b]], pos_p[b], pos_p)
        total = total + row_loss(item_all[neg[b]], neg_p[b], neg_p)
    return total / len(user)


@pytest.mark.parametrize("user_negatives", ["all", "batch"])
def test_contrastive_alignment_equals_rlmrec_formula(user_negatives):
    torch.manual_seed(0)
    n_users, n_items, d, ds, t = 6, 7, 4, 10, 0.2
    align = ContrastiveAlignment(ds, d, t, user_negatives)
    user_profile, item_profile = torch.randn(n_users, ds), torch.randn(n_items, ds)
    user_all, item_all = torch.randn(n_users, d), torch.randn(n_items, d)
    # Repeated ids in the batch, as in real batches.
    user = torch.tensor([1, 2, 2, 5, 1, 3])
    pos = torch.tensor([1, 1, 4, 6, 2, 1])
    neg = torch.tensor([3, 5, 5, 2, 6, 6])
    loss = align(user_all, item_all, user, pos, neg, user_profile, item_profile)
    if user_negatives == "all":
        expected = _rlmrec_con_reference(align, user_all, item_all, user, pos, neg, user_profile, item_profile, t)
    else:
        # In-batch users: the user term's candidates are the batch's users (with repeats).
        proj = align.projector
        up = proj(user_profile[user])
        user_term = info_nce(user_all[user], up, t).sum()
        pos_p, neg_p = proj(item_profile[pos]), proj(item_profile[neg])
        item_terms = info_nce(item_all[pos], pos_p, t).sum() + info_nce(item_all[neg], neg_p, t).sum()
        expected = (user_term + item_terms) / len(user)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _con_batch():
    torch.manual_seed(3)
    user_profile, item_profile = torch.randn(30, 10), torch.randn(40, 10)
    user_all, item_all = torch.randn(30, 4), torch.randn(40, 4)
    user, pos, neg = torch.randint(1, 30, (64,)), torch.randint(1, 40, (64,)), torch.randint(1, 40, (64,))
    return user_all, item_all, user, pos, neg, user_profile, item_profile


@pytest.mark.parametrize("user_negatives", ["all", "batch"])
def test_contrastive_sample_uses_a_uniform_sample_of_the_batch_rows(user_negatives):
    user_all, item_all, user, pos, neg, user_profile, item_profile = _con_batch()
    sampled = ContrastiveAlignment(10, 4, 0.2, user_negatives, sample_size=16)
    full = ContrastiveAlignment(10, 4, 0.2, user_negatives)
    full.load_state_dict(sampled.state_dict())
    torch.manual_seed(7)
    loss = sampled(user_all, item_all, user, pos, neg, user_profile, item_profile)
    torch.manual_seed(7)
    rows = torch.randperm(len(user))[:16]
    expected = full(user_all, item_all, user[rows], pos[rows], neg[rows], user_profile, item_profile)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(full(user_all, item_all, user, pos, neg, user_profile, item_profile).item(), rel=1e-3)
    # A batch no larger than the sample is used whole, drawing no random numbers.
    whole = ContrastiveAlignment(10, 4, 0.2, user_negatives, sample_size=64)
    whole.load_state_dict(sampled.state_dict())
    state = torch.get_rng_state()
    assert whole(user_all, item_all, user, pos, neg, user_profile, item_profile).item() == pytest.approx(
        full(user_all, item_all, user, pos, neg, user_profile, item_profile).item(), rel=1e-6
    )
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("stacked_max_rows", [128, 0])
def test_contrastive_sample_keeps_the_cost_fixed(monkeypatch, stacked_max_rows):
    monkeypatch.setattr(alignment, "STACKED_MAX_ROWS", stacked_max_rows)
    align = ContrastiveAlignment(10, 4, 0.2, "batch", sample_size=8)
    projected = []
    align.projector.register_forward_hook(lambda module, inputs, output: projected.append(len(inputs[0])))
    for batch in (64, 4096):
        user, item = torch.randint(1, 5000, (batch,)), torch.randint(1, 5000, (2, batch))
        profiles, embeddings = torch.randn(5000, 10), torch.randn(5000, 4)
        align(embeddings, embeddings, user, item[0], item[1], profiles, profiles)
    if stacked_max_rows:  # per step one projection of the 8 sampled rows' positives, negatives and users
        assert projected == [24, 24]
    else:  # per step at most 8 positive + 8 negative distinct items, then at most 8 distinct users
        assert len(projected) == 4 and max(projected) <= 16


def test_contrastive_stacked_and_deduplicated_forms_agree(monkeypatch):
    # Small batches take the stacked form, large ones the deduplicated form: the same loss and
    # gradients on a batch with repeated ids.
    user_all, item_all, user, pos, neg, user_profile, item_profile = _con_batch()
    user_all.requires_grad_(True)
    align = ContrastiveAlignment(10, 4, 0.2, "batch")
    results = []
    for stacked_max_rows in (128, 0):
        monkeypatch.setattr(alignment, "STACKED_MAX_ROWS", stacked_max_rows)
        align.zero_grad()
        user_all.grad = None
        loss = align(user_all, item_all, user, pos, neg, user_profile, item_profile)
        loss.backward()
        results.append((loss.item(), user_all.grad.clone(), align.projector[0].weight.grad.clone()))
    (stacked, *stacked_grads), (deduplicated, *deduplicated_grads) = results
    assert stacked == pytest.approx(deduplicated, rel=1e-6)
    for a, b in zip(stacked_grads, deduplicated_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_contrastive_projector_shape_and_init():
    align = ContrastiveAlignment(384, 64, 0.2)
    first, act, last = align.projector
    assert (first.in_features, first.out_features, last.in_features, last.out_features) == (384, 224, 224, 64)
    assert isinstance(act, nn.LeakyReLU)
    bound = math.sqrt(6 / (384 + 224))
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.all(first.bias == 0)


def test_contrastive_gradients_reach_embeddings_and_projector():
    align = ContrastiveAlignment(5, 3, 0.2)
    user_all = torch.randn(4, 3, requires_grad=True)
    item_all = torch.randn(5, 3, requires_grad=True)
    loss = align(user_all, item_all, torch.tensor([1, 2]), torch.tensor([1, 3]), torch.tensor([4, 2]), torch.randn(4, 5), torch.randn(5, 5))
    loss.backward()
    assert user_all.grad[1:3].abs().sum() > 0 and user_all.grad[0].abs().sum() == 0
    assert align.projector[0].weight.grad.abs().sum() > 0


def test_generative_mask_replaces_a_share_of_candidates_by_the_token():
    torch.manual_seed(0)
    align = GenerativeAlignment(4, 6, 0.5, mask_ratio=0.25)
    with torch.no_grad():
        align.mask_token.fill_(7.0)
    ego = torch.randn(10, 4)
    candidates = torch.tensor([1, 2, 3, 4, 6, 7, 8, 9])  # 0 and 5 are padding rows
    masked, seeds = align.mask(ego, candidates)
    assert len(seeds) == 2 and set(seeds.tolist()) <= set(candidates.tolist())
    assert torch.all(masked[seeds] == 7.0)
    untouched = [r for r in range(10) if r not in seeds.tolist()]
    assert torch.equal(masked[untouched], ego[untouched])



def test_generative_mask_gradients_go_to_the_token_for_masked_rows_only():
    torch.manual_seed(0)
    align = GenerativeAlignment(4, 6, 0.5, mask_ratio=0.3)
    ego = torch.randn(10, 4, requires_grad=True)
    masked, seeds = align.mask(ego, torch.arange(1, 10))
    upstream = torch.randn(10, 4)
    masked.backward(upstream)
    untouched = [r for r in range(10) if r not in seeds.tolist()]
    assert torch.all(ego.grad[seeds] == 0)
    assert torch.equal(ego.grad[untouched], upstream[untouched])
    assert torch.allclose(align.mask_token.grad, upstream[seeds].sum(0, keepdim=True))

def test_generative_loss_equals_rlmrec_formula():
    torch.manual_seed(1)
    t = 0.5
    align = GenerativeAlignment(4, 6, t, mask_ratio=0.5)
    nodes, profiles = torch.randn(9, 4), torch.randn(9, 6)
    seeds = torch.tensor([2, 5, 7])
    loss = align(nodes, profiles, seeds)
    rec = align.decoder(nodes[seeds])
    x = rec / rec.norm(dim=1, keepdim=True)
    y = profiles[seeds] / profiles[seeds].norm(dim=1, keepdim=True)
    expected = -torch.log(torch.exp((x * y).sum(1) / t) / torch.exp(x @ y.T / t).sum(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    first, _, last = align.decoder
    assert (first.in_features, first.out_features, last.out_features) == (4, 5, 6)


@pytest.mark.parametrize("sample_size", [2, 3, 10])
def test_generative_sample_reconstructs_the_first_masked_nodes(sample_size):
    # mask() returns the masked nodes in random order, so the first k are a uniform sample of them.
    torch.manual_seed(2)
    align = GenerativeAlignment(4, 6, 0.5, mask_ratio=0.5, sample_size=sample_size)
    nodes, profiles = torch.randn(9, 4), torch.randn(9, 6)
    seeds = torch.tensor([2, 5, 7])
    sampled = seeds[:sample_size]
    full = GenerativeAlignment(4, 6, 0.5, mask_ratio=0.5)
    full.load_state_dict(align.state_dict())
    assert align(nodes, profiles, seeds).item() == pytest.approx(full(nodes, profiles, sampled).item(), rel=1e-6)
    if sample_size < len(seeds):
        assert align(nodes, profiles, seeds).item() != pytest.approx(full(nodes, profiles, seeds).item(), rel=1e-3)


def test_generative_sample_keeps_the_cost_fixed():
    align = GenerativeAlignment(4, 6, 0.5, mask_ratio=0.5, sample_size=16)
    decoded = []
    align.decoder.register_forward_hook(lambda module, inputs, output: decoded.append(len(inputs[0])))
    for n_nodes in (100, 1000):
        nodes, profiles = torch.randn(n_nodes, 4), torch.randn(n_nodes, 6)
        _, seeds = align.mask(nodes, torch.arange(n_nodes))
        align(nodes, profiles, seeds)
    assert decoded == [16, 16]


@pytest.mark.parametrize("bias_init", ["zeros", "pytorch"])
def test_mlp_biases_start_at_zero_or_at_pytorchs_default_as_rlmrec(bias_init):
    torch.manual_seed(0)
    con = ContrastiveAlignment(profile_dim=48, embedding_dim=16, temperature=0.2, bias_init=bias_init)
    gen = GenerativeAlignment(embedding_dim=16, profile_dim=48, temperature=0.5, mask_ratio=0.2, bias_init=bias_init)
    for mlp in (con.projector, gen.decoder):
        for layer in (mlp[0], mlp[2]):
            bound = 1 / math.sqrt(layer.in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            if bias_init == "zeros":
                assert torch.all(layer.bias == 0)
            else:
                assert layer.bias.abs().max() <= bound and layer.bias.abs().max() > bound / 2 and layer.bias.std() > 0
            weight_bound = math.sqrt(6 / (layer.in_features + layer.out_features))  # Xavier either way
            assert layer.weight.abs().max() <= weight_bound


def test_default_bias_init_is_zeros():
    assert ContrastiveAlignment(8, 4, 0.2).projector[0].bias.abs().sum() == 0
