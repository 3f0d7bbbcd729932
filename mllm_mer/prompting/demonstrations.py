"""Labelled demonstrations: an index over a split's utterances, nearest first, for the prompts that show them
(the `retrieved` template) and the agent's `recall` tool.

TF-IDF (scikit-learn) by default; mean-pooled sentence embeddings from any transformers
encoder when one is named. The index is cached on disk, keyed by the split's content and
the method, in the user cache ($MLLM_MER_CACHE, else ~/.cache/mllm-mer: data folders are often
shared or read-only, and a content key needs no invalidation). When
the index holds the split a query comes from, the query's own row and every row of its
dialogue are left out: a demonstration must never carry the answer (or its neighbours').

It reads only samples, so it stands on the prompting floor, below the datasets that load them
(stages.retrieval.index_for loads a split and indexes it).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.core.types import Sample

USER_CACHE = Path(os.environ.get("MLLM_MER_CACHE", "~/.cache/mllm-mer")).expanduser() / "retrieval"


@dataclass(frozen=True)
class Demonstration:
    """A labelled utterance of the indexed split, as a prompt shows it."""

    id: str
    speaker: str | None
    text: str
    labels: dict[str, str]
    similarity: float


def document(sample: Sample) -> str:
    """What is indexed (and queried): the utterance, weighted double, and the turn before it."""
    previous = sample.context[-1].text if sample.context else ""
    return f"{sample.transcript or ''} {sample.transcript or ''} {previous}".strip()


def dialogue_of(sample: Sample) -> Any:
    return sample.metadata.get("dialogue")


class DemonstrationIndex:
    def __init__(self, samples: Sequence[Sample], source: str, embedder: str | None = None):
        rows = [s for s in samples if s.transcript and s.gold]
        if not rows:
            raise ValueError(f"{source}: no labelled utterance with a transcript to retrieve from")
        self.rows, self.source, self.embedder = rows, source, embedder
        self._vectorizer = None
        self._encoder = None
        key = hashlib.sha256(json.dumps([embedder or "tfidf", [(s.id, document(s)) for s in rows]]).encode())
        self.cache_file = USER_CACHE / f"{key.hexdigest()[:24]}.npz"
        self.matrix = self._load() if self.cache_file.is_file() else self._build()

    # -- building and caching -------------------------------------------------------------------
    def _build(self):
        docs = [document(s) for s in self.rows]
        if self.embedder:
            matrix = self._embed(docs)
            extra = {}
        else:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
            matrix = self._vectorizer.fit_transform(docs)
            extra = {"vocabulary": json.dumps({k: int(v) for k, v in self._vectorizer.vocabulary_.items()}),
                     "idf": self._vectorizer.idf_}
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            payload = ({"dense": matrix} if self.embedder else
                       {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr,
                        "shape": np.array(matrix.shape)})
            tmp = self.cache_file.with_suffix(".tmp.npz")
            np.savez(tmp, **payload, **extra)
            os.replace(tmp, self.cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time
        return matrix

    def _load(self):
        with np.load(self.cache_file, allow_pickle=False) as data:
            if self.embedder:
                return data["dense"]
            from scipy.sparse import csr_matrix
            from sklearn.feature_extraction.text import TfidfVectorizer

            vocabulary = json.loads(str(data["vocabulary"]))
            self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True,
                                               vocabulary=vocabulary)
            self._vectorizer.idf_ = data["idf"]
            return csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self._encoder is None:
            tokenizer = AutoTokenizer.from_pretrained(self.embedder)
            model = AutoModel.from_pretrained(self.embedder, use_safetensors=True).eval()
            self._encoder = (tokenizer, model)
        tokenizer, model = self._encoder
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                batch = tokenizer(list(texts[start:start + 64]), padding=True, truncation=True, max_length=256,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        return np.concatenate(out)

    # -- querying ---------------------------------------------------------------------------------
    def _vectors(self, samples: Sequence[Sample]):
        docs = [document(s) for s in samples]
        if self.embedder:
            return self._embed(docs)
        return self._vectorizer.transform(docs)

    def nearest(self, samples: Sequence[Sample], k: int, source: str | None = None) -> list[list[Demonstration]]:
        """The k most similar labelled rows per sample (cosine similarity, best first).

        `source`: the split the samples come from; when it is the indexed split, each sample's
        own row and its dialogue are excluded."""
        if not samples:
            return []
        similarity = self._vectors(samples) @ self.matrix.T
        similarity = similarity.toarray() if hasattr(similarity, "toarray") else np.asarray(similarity)
        same_split = source == self.source
        results = []
        for row, sample in enumerate(samples):
            order = np.argsort(-similarity[row], kind="stable")
            picked = []
            for j in order:
                candidate = self.rows[j]
                if same_split and (candidate.id == sample.id or
                                   (dialogue_of(sample) is not None and dialogue_of(candidate) == dialogue_of(sample))):
                    continue
                picked.append(Demonstration(candidate.id, candidate.speaker, candidate.transcript or "",
                                            {k_: str(v) for k_, v in candidate.gold.items()},
                                            float(similarity[row, j])))
                if len(picked) == k:
                    break
            results.append(picked)
        return results
