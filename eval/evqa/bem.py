"""BEM (BERT answer-equivalence) scoring for E-VQA, behind a small interface.

The official E-VQA metric falls back to BEM (Bulian et al., 2022) when exact match
fails. The official model is a TF-Hub SavedModel; here any PyTorch/``transformers``
sequence-classification checkpoint with a BERT-style tokenizer can play that role
(for example a community port of BEM), given by hub name or local path and resolved
through :func:`ret2vqa.hub.resolve_model`, so an unavailable model fails with the
project's usual offline message instead of a hub traceback.

The input layout follows the official ``combine_segments((candidate, reference,
question))``::

    [CLS] candidate [SEP] reference [SEP] question [SEP]
      0      0...     0      1...     1      2...    2      <- segment ids

Each text is WordPiece-tokenized separately (no special tokens). When the checkpoint's
``type_vocab_size`` is < 3, the question segment gets id 1 instead of 2 (``"0/1"`` mode,
the layout the PyTorch ports were trained with); with ``type_vocab_size`` < 2 no
``token_type_ids`` are passed at all (``"none"``). Sequences are zero-padded to
``max_length`` = 512 like the official code, with an attention mask that hides the
padding. Where the official ``pad`` would crash on inputs longer than 512 tokens we
truncate the longest of the three segments first (counted in :attr:`TransformersBEM.truncated`).
The score is ``softmax(logits)[1]``; an answer is equivalent iff score ≥ 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from ret2vqa.errors import ConfigError

logger = logging.getLogger(__name__)

N_SPECIAL_TOKENS = 4  # [CLS] + 3 x [SEP]


@dataclass(frozen=True)
class BEMExample:
    """One BEM query. ``reference`` is the text BEM sees (``&&`` already turned into ``,``)."""

    question: str
    reference: str
    candidate: str


@runtime_checkable
class AnswerEquivalenceScorer(Protocol):
    """Anything that returns, for each example, the probability that candidate ≡ reference."""

    name: str
    threshold: float

    def score(self, examples: Sequence[BEMExample]) -> list[float]: ...

    def describe(self) -> dict[str, Any]:
        """JSON-friendly facts about the scorer for result files (model, segment layout)."""
        ...


@dataclass
class BEMConfig:
    """How to load and run a BEM checkpoint (``--bem`` on the command line)."""

    name_or_path: str
    revision: str | None = None
    device: str | None = None  # default: cuda when available, else cpu
    batch_size: int = 32
    max_length: int = 512
    pad_to_max_length: bool = True  # the official layout; False pads per batch (same logits, faster on CPU)
    threshold: float = 0.5


def truncate_segments(segments: list[list[int]], budget: int) -> tuple[list[list[int]], bool]:
    """Drop tokens from the end of the currently longest segment until the total fits ``budget``."""
    segments = [list(s) for s in segments]
    total = sum(len(s) for s in segments)
    truncated = total > budget
    while total > budget:
        longest = max(range(len(segments)), key=lambda i: (len(segments[i]), -i))
        segments[longest].pop()
        total -= 1
    return segments, truncated


class TransformersBEM:
    """BEM on a ``transformers`` ``AutoModelForSequenceClassification`` checkpoint."""

    def __init__(self, config: BEMConfig | str, **overrides: Any):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ret2vqa.hub import resolve_model

        if isinstance(config, str):
            config = BEMConfig(name_or_path=config, **overrides)
        elif overrides:
            raise TypeError("pass either a BEMConfig or keyword overrides, not both")
        self.config = config
        self.name = config.name_or_path
        self.threshold = config.threshold
        local_dir = resolve_model(config.name_or_path, config.revision, config_field="--bem / BEMConfig.name_or_path")
        self.tokenizer = AutoTokenizer.from_pretrained(local_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(local_dir)
        if self.model.config.num_labels != 2:
            raise ConfigError(
                f"BEM model '{config.name_or_path}' has {self.model.config.num_labels} labels; "
                "an answer-equivalence model must have 2 (not equivalent, equivalent)"
            )
        if self.tokenizer.cls_token_id is None or self.tokenizer.sep_token_id is None:
            raise ConfigError(
                f"BEM tokenizer of '{config.name_or_path}' has no [CLS]/[SEP] tokens; a BERT-style tokenizer is required"
            )
        if config.max_length < N_SPECIAL_TOKENS + 3:
            raise ConfigError(f"BEMConfig.max_length must be at least {N_SPECIAL_TOKENS + 3}, got {config.max_length}")
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        type_vocab = getattr(self.model.config, "type_vocab_size", 0) or 0
        self.segment_mode = "0/1/2" if type_vocab >= 3 else ("0/1" if type_vocab == 2 else "none")
        self.question_segment_id = 2 if self.segment_mode == "0/1/2" else 1
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.truncated = 0
        if self.segment_mode != "0/1/2":
            logger.warning(
                "BEM model '%s' has type_vocab_size=%s: using segment ids %s instead of the official 0/1/2 "
                "(an approximation of the official BEM input)",
                config.name_or_path,
                type_vocab,
                self.segment_mode,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "bem_model": self.name,
            "bem_segment_ids": self.segment_mode,
            "bem_threshold": self.threshold,
            "bem_truncated_inputs": self.truncated,
        }

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def encode_many(self, examples: Sequence[BEMExample]) -> list[tuple[list[int], list[int]]]:
        """``(input_ids, segment_ids)`` per example, unpadded: the official layout, truncated to ``max_length``."""
        candidates = self._tokenize([e.candidate for e in examples])
        references = self._tokenize([e.reference for e in examples])
        questions = self._tokenize([e.question for e in examples])
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        out = []
        for cand, ref, quest in zip(candidates, references, questions):
            (cand, ref, quest), cut = truncate_segments([cand, ref, quest], self.config.max_length - N_SPECIAL_TOKENS)
            self.truncated += int(cut)
            ids = [cls, *cand, sep, *ref, sep, *quest, sep]
            segments = [0] * (len(cand) + 2) + [1] * (len(ref) + 1) + [self.question_segment_id] * (len(quest) + 1)
            out.append((ids, segments))
        return out

    def encode(self, example: BEMExample) -> tuple[list[int], list[int]]:
        return self.encode_many([example])[0]

    def collate(self, encoded: Sequence[tuple[list[int], list[int]]]) -> dict[str, Any]:
        """Pad to ``max_length`` (or to the batch's longest) and build tensors for the model."""
        import torch

        length = self.config.max_length if self.config.pad_to_max_length else max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        segment_ids = torch.zeros((len(encoded), length), dtype=torch.long)
        attention = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, (ids, segments) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            segment_ids[row, : len(segments)] = torch.tensor(segments)
            attention[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if self.segment_mode != "none":
            batch["token_type_ids"] = segment_ids
        return batch

    def score(self, examples: Sequence[BEMExample]) -> list[float]:
        """BEM probability of equivalence, ``softmax(logits)[:, 1]``, for each example."""
        import torch
        from tqdm.auto import tqdm

        scores: list[float] = []
        size = max(1, self.config.batch_size)
        starts = range(0, len(examples), size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="BEM", unit="batch", disable=len(starts) < 20):
                batch = self.collate(self.encode_many(examples[start : start + size]))
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
                scores.extend(torch.softmax(logits.float(), dim=-1)[:, 1].tolist())
        return scores
