r"""The benchmarks' variant syntax: ``Model[:align[:key=value ...]]``."""

import ast


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
