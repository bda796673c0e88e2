r"""What the benchmark scripts share: the variant syntax ``Model[:align[:key=value ...]]``, ``--set
key=value`` settings, where each seed's profile store lives, one training step, and timing on a GPU."""

import ast
import os


def parse_value(text):
    r"""A Python literal (``0.05``, ``1e-3``, ``"batch"``, ``[5, 10]``), else the bare string (``batch``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_variant(text):
    r"""``LightGCN``, ``LightGCN_RLM:con`` or ``LightGCN_RLM:gen:align_weight=0.05:mask_sample_size=128``
    -> (model name, config dict)."""
    model, *rest = text.split(":")
    extra = {"align": rest[0]} if rest else {}
    for item in rest[1:]:
        key, value = item.split("=", 1)
        extra[key] = parse_value(value)
    return model, extra


def parse_settings(items):
    r"""``["n_layers=3", "align=batch"]`` (a ``--set`` list) -> ``{"n_layers": 3, "align": "batch"}``."""
    return {key: parse_value(value) for key, value in (item.split("=", 1) for item in items)}


def training_step(model, optimizer, interaction):
    r"""One training step as RecBole's Trainer takes it: the loss terms summed, backward, optimizer step."""
    optimizer.zero_grad()
    losses = model.calculate_loss(interaction)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    loss.backward()
    optimizer.step()


def profile_pattern(dataset):
    r"""Default ``--profiles``: one store per seed (user profiles follow the seed's training split)."""
    return os.path.join("profiles", dataset + "-seed{seed}")


def synchronize(device):
    r"""Wait for the GPU's queued work, so that a wall clock read next measures it (no-op on the CPU)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
