r"""Base models RecBole lacks, and RecBole models the plugin extends (one module per model, named in lower
case, found by ``get_model`` before RecBole's)."""
