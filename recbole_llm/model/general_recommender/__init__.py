r"""Base models RecBole lacks (one module per model, named in lower case, found by ``get_model``)."""
