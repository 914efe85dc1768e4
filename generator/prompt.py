"""Building the prompt: retrieved passages, then the question, within a token budget.

The user turn holds the image, then a context section with the passages in rank order
(``[1] Title: text``), then the question and a short-answer instruction; the model's own
chat template (through its processor) wraps it. With no passages the context section is
left out and the same model answers zero-shot.

**What the budget covers.** ``token_budget`` bounds the number of input tokens the model
will see for the request: the chat template's tokens, the image's tokens *as expanded by
the processor* (e.g. ``<|image_pad|>`` x N for Qwen2-VL, the tiles of Idefics3/SmolVLM),
the passages, the question and the instruction. Counts are exact: text is counted with
the model's tokenizer on the rendered prompt, and the image's share is measured by
running the processor once per image size. When the passages do not all fit, the
lowest-ranked ones go first: the passages kept are always the top ones in rank order, the
last of them possibly cut (at a token boundary, marked with ``truncation_marker``), and a
passage that would keep fewer than ``min_passage_tokens`` text tokens is dropped instead.
The instruction and the image are never cut. The question is bounded by
``max_question_tokens`` (and, when the question, instruction and image alone would exceed
the budget, cut further so that they fit): a longer question is cut at a token boundary
with a warning, or refused with :class:`~ret2vqa.errors.InputError` when
``long_question="error"``. Before it is tokenized a question is cut to a generous number
of characters, so a 500,000-character question costs no more than a 5,000-character one.
If the template, instruction and image alone exceed the budget the prompt carries no
passages and a warning is logged.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any

from ret2vqa.errors import ConfigError, InputError
from ret2vqa.images import image_side, reduce_to_side

from .config import PromptConfig
from .schema import Passage

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")
# No tokenizer packs more characters than this into one token (long ones top out near 20).
_CHARS_PER_TOKEN_CAP = 64


@dataclass
class BuiltPrompt:
    """A prompt ready for the processor, with its exact token count and what went into it."""

    #: The rendered chat prompt (image placeholders not yet expanded by the processor).
    text: str
    #: The chat messages that were rendered (image given as a ``{"type": "image"}`` block).
    messages: list[dict[str, Any]]
    #: The RGB image, or ``None`` for a text-only question.
    image: Any
    #: Exact number of input tokens, image tokens included.
    num_tokens: int
    #: How many of the given passages (the top ones, in order) are in the prompt.
    passages_used: int
    #: Whether a passage was cut or dropped to fit the budget.
    truncated: bool
    #: The context lines as they appear in the prompt, in rank order.
    context: list[str] = field(default_factory=list)
    #: Whether the processor must add the tokenizer's special tokens (``False`` when the
    #: chat template already starts with the BOS token).
    add_special_tokens: bool = True
    #: Whether the question was cut to fit ``max_question_tokens`` or the budget.
    question_truncated: bool = False


class PromptBuilder:
    """Lays out question and passages for one model and fits them to a token budget.

    ``processor`` is the model's ``transformers`` processor (it renders the chat template,
    tokenizes and expands image tokens). ``chat_template`` overrides the processor's.
    """

    def __init__(
        self,
        processor: Any,
        config: PromptConfig | None = None,
        token_budget: int | None = None,
        chat_template: str | None = None,
        image_cache_size: int = 256,
        max_question_tokens: int | None = None,
        long_question: str = "truncate",
    ):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.config = config or PromptConfig()
        self.token_budget = token_budget
        self.max_question_tokens = max_question_tokens
        if long_question not in ("truncate", "error"):
            raise ConfigError(f"must be 'truncate' or 'error', got {long_question!r}", "long_question")
        self.long_question = long_question
        self.chat_template = chat_template or getattr(processor, "chat_template", None) or getattr(
            self.tokenizer, "chat_template", None
        )
        if not self.chat_template:
            raise ConfigError(
                "chat_template: the model's processor has no chat template; set `chat_template` in the generator config"
            )
        #: Images are cut towards this side before the processor sees them (see :meth:`build`).
        self.image_side = image_side(getattr(processor, "image_processor", None))
        self._image_tokens: OrderedDict[tuple, int] = OrderedDict()
        self._image_cache_size = image_cache_size
        self._control_tokens = _control_token_pattern(processor, self.tokenizer)

    # ----------------------------------------------------------------- layout
    def format_passage(self, rank: int, passage: Passage, text: str | None = None) -> str:
        """One context line for ``passage`` (``text`` replaces its text, e.g. when truncated)."""
        title = self.clean(passage.title)
        body = self.clean(passage.text) if text is None else text
        template = self.config.passage_template if title else self.config.untitled_passage_template
        return template.format(rank=rank, title=title, text=body)

    def user_text(self, question: str, context: Sequence[str]) -> str:
        """The user turn's text: context section (only with passages), question, instruction."""
        cfg = self.config
        parts = []
        if context:
            parts.append(cfg.context_header + "\n" + cfg.passage_separator.join(context))
            parts.append("")  # blank line between context and question
        parts.append(cfg.question_template.format(question=question))
        if cfg.instruction:
            parts.append(cfg.instruction)
        return "\n".join(parts)

    def messages(self, user_text: str, has_image: bool) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": user_text})
        messages = []
        if self.config.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]})
        messages.append({"role": "user", "content": content})
        return messages

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The chat template applied to ``messages``, ending with the assistant's turn opener."""
        return self.processor.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False
        )

    def clean(self, text: str) -> str:
        """Collapse whitespace and remove control tokens (``<image>``, ``<|im_end|>``...) from user text,
        so that a passage can neither fake an image placeholder nor close the turn."""
        text = self._control_tokens.sub(" ", str(text)) if self._control_tokens else str(text)
        return _WHITESPACE.sub(" ", text).strip()

    # --------------------------------------------------------------- counting
    def adds_special_tokens(self, rendered: str) -> bool:
        """Mirror of ``processor.apply_chat_template(tokenize=True)``: no extra BOS when the template has one."""
        bos = getattr(self.tokenizer, "bos_token", None)
        return not (bos and rendered.startswith(bos))

    def count_text_tokens(self, rendered: str) -> int:
        """Tokens of the rendered prompt, image placeholders counted as written (unexpanded)."""
        ids = self.tokenizer(rendered, add_special_tokens=self.adds_special_tokens(rendered))["input_ids"]
        return len(ids)

    def image_token_overhead(self, image: Any, rendered: str) -> int:
        """How many tokens the processor adds to ``rendered`` when it expands ``image``'s placeholder.

        Measured by running the processor (exact for every family); cached per image size,
        which is all the expansion depends on for the supported families.
        """
        key = (image.size, image.mode)
        if key in self._image_tokens:
            self._image_tokens.move_to_end(key)
            return self._image_tokens[key]
        add_special = self.adds_special_tokens(rendered)
        expanded = self.processor(text=[rendered], images=[[image]], add_special_tokens=add_special)["input_ids"][0]
        overhead = len(expanded) - self.count_text_tokens(rendered)
        self._image_tokens[key] = overhead
        if len(self._image_tokens) > self._image_cache_size:
            self._image_tokens.popitem(last=False)
        return overhead

    # --------------------------------------------------------------- building
    def build(self, question: str, image: Any = None, passages: Sequence[Any] = ()) -> BuiltPrompt:
        """Lay out ``question`` (and ``image``) with as many of ``passages`` as the budget allows.

        ``image`` must already be a PIL image (see :func:`ret2vqa.images.load_image`). A large
        one is first cut by a whole factor towards the processor's size
        (:func:`ret2vqa.images.reduce_to_side`); the prompt keeps that image, so the processor
        never resizes a full photo.
        """
        image = reduce_to_side(image, self.image_side)
        question = self.clean(question)
        if not question:
            raise InputError("the question is empty")
        question, question_cut = self._bound_question(question)
        items = [Passage.coerce(p) for p in passages]
        items = [p for p in items if self.clean(p.title) or self.clean(p.text)]
        has_image = image is not None
        overhead: int | None = None

        def measure(context: list[str]) -> tuple[list[dict[str, Any]], str, int]:
            nonlocal overhead
            msgs = self.messages(self.user_text(question, context), has_image)
            rendered = self.render(msgs)
            if has_image and overhead is None:
                overhead = self.image_token_overhead(image, rendered)
            return msgs, rendered, self.count_text_tokens(rendered) + (overhead or 0)

        budget = self.token_budget
        if budget is None:
            context = [self.format_passage(i + 1, p) for i, p in enumerate(items)]
            msgs, rendered, n = measure(context)
            return self._result(rendered, msgs, image, n, context, len(items), False, question_cut)

        if items:  # the common case, everything fits: one exact count instead of one per passage
            full = [self.format_passage(i + 1, p) for i, p in enumerate(items)]
            msgs, rendered, n = measure(full)
            if n <= budget:
                return self._result(rendered, msgs, image, n, full, len(items), False, question_cut)
        context: list[str] = []
        msgs, rendered, n = measure(context)
        truncated = False
        marker = None  # the truncation marker's token count, once it is needed
        for _ in range(3):  # the question alone overflows the budget: cut it by the excess (token counts settle)
            if n <= budget:
                break
            q_tokens = _TokenPrefixes(self.tokenizer, question)
            if marker is None:
                marker = len(self.tokenizer(self.config.truncation_marker, add_special_tokens=False)["input_ids"])
            keep = len(q_tokens) - (n - budget) - marker - 1
            if keep < 1:
                break
            if self.long_question == "error":
                raise self._too_long(len(q_tokens), budget_bound=True)
            question, question_cut = q_tokens[keep - 1].rstrip() + self.config.truncation_marker, True
            msgs, rendered, n = measure(context)
            logger.warning("the question was cut to %d tokens to fit the prompt budget "
                           "(generator.context_token_budget: %d)", keep, budget)
        if n > budget:
            logger.warning(
                "the question, instruction and image alone take %d tokens, over the budget of %d: "
                "answering without passages (raise context_token_budget or shrink the image)",
                n,
                budget,
            )
            return self._result(rendered, msgs, image, n, [], 0, bool(items), question_cut)
        for rank, passage in enumerate(items, start=1):
            line = self.format_passage(rank, passage)
            candidate = measure(context + [line])
            if candidate[2] <= budget:
                context.append(line)
                msgs, rendered, n = candidate
                continue
            truncated = True
            cut = self._fit_truncated(rank, passage, context, measure, budget)
            if cut is not None:
                line, (msgs, rendered, n) = cut
                context.append(line)
            break
        return self._result(rendered, msgs, image, n, context, len(context), truncated, question_cut)

    def _bound_question(self, question: str) -> tuple[str, bool]:
        """``question`` within ``max_question_tokens`` (cut at a token boundary), and whether it was cut.

        Characters beyond ``_CHARS_PER_TOKEN_CAP`` per allowed token are dropped before
        tokenizing: no tokenizer yields fewer tokens than that, so the cut is the same and
        tokenizing costs the same whatever the question's length.
        """
        limit = self.max_question_tokens
        if limit is None:
            return question, False
        head = question[: limit * _CHARS_PER_TOKEN_CAP]
        prefixes = _TokenPrefixes(self.tokenizer, head)
        if len(prefixes) <= limit:
            return question, False
        if self.long_question == "error":
            raise self._too_long(len(prefixes) if head == question else None)
        cut = prefixes[limit - 1].rstrip() + self.config.truncation_marker
        logger.warning("the question has %s characters, over generator.max_question_tokens (%d tokens): "
                       "cut to its first %d tokens", f"{len(question):,}", limit, limit)
        return cut, True

    def _too_long(self, tokens: int | None, budget_bound: bool = False) -> InputError:
        size = f"{tokens} tokens" if tokens is not None else "too many tokens"
        where = ("over what the prompt budget leaves for it (generator.context_token_budget)" if budget_bound
                 else f"over generator.max_question_tokens ({self.max_question_tokens})")
        return InputError(f"the question has {size}, {where}; shorten it, raise the limit, or let it be cut "
                          f"(generator.long_question: truncate, i.e. without --strict)")

    def _fit_truncated(
        self,
        rank: int,
        passage: Passage,
        context: list[str],
        measure: Callable[[list[str]], tuple[list[dict[str, Any]], str, int]],
        budget: int,
    ) -> tuple[str, tuple[list[dict[str, Any]], str, int]] | None:
        """The longest token-prefix of ``passage``'s text (>= ``min_passage_tokens``) that fits, or ``None``."""
        text = self.clean(passage.text)
        prefixes = _TokenPrefixes(self.tokenizer, text)
        lo, hi = self.config.min_passage_tokens, len(prefixes) - 1  # the whole text did not fit
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            line = self.format_passage(rank, passage, prefixes[mid - 1].rstrip() + self.config.truncation_marker)
            candidate = measure(context + [line])
            if candidate[2] <= budget:
                best = (line, candidate)
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    def _result(self, rendered, msgs, image, n, context, used, truncated, question_cut=False) -> BuiltPrompt:
        return BuiltPrompt(
            text=rendered,
            messages=msgs,
            image=image,
            num_tokens=n,
            passages_used=used,
            truncated=truncated,
            context=list(context),
            add_special_tokens=self.adds_special_tokens(rendered),
            question_truncated=question_cut,
        )


class _TokenPrefixes(SequenceABC):
    """``prefixes[i]`` = the text of the first ``i + 1`` tokens, decoded only when asked for."""

    def __init__(self, tokenizer: Any, text: str):
        self._tokenizer = tokenizer
        self._text = text
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            self._ends = [end for _, end in enc["offset_mapping"]]
            self._ids = None
        except (NotImplementedError, TypeError, ValueError, KeyError):  # tokenizers without offsets
            self._ends = None
            self._ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    def __len__(self) -> int:
        return len(self._ends if self._ends is not None else self._ids)

    def __getitem__(self, i):  # type: ignore[override]
        if self._ends is not None:
            return self._text[: self._ends[i]]
        return self._tokenizer.decode(self._ids[: i + 1], skip_special_tokens=True)


def _control_token_pattern(processor: Any, tokenizer: Any) -> re.Pattern | None:
    """A regex matching the model's special/control tokens as they could appear in user text."""
    tokens: set[str] = set()
    for attr in ("image_token", "video_token", "audio_token", "fake_image_token", "global_image_tag", "global_image_token"):
        value = getattr(processor, attr, None)
        if isinstance(value, str) and value:
            tokens.add(value)
    for value in getattr(tokenizer, "all_special_tokens", []) or []:
        if isinstance(value, str) and value.strip():
            tokens.add(value)
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for token in added.values():
        if getattr(token, "special", False) and str(token).strip():
            tokens.add(str(token))
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def build_prompt(
    processor: Any,
    question: str,
    image: Any = None,
    passages: Sequence[Any] = (),
    *,
    config: PromptConfig | None = None,
    token_budget: int | None = None,
    chat_template: str | None = None,
) -> BuiltPrompt:
    """One-shot :meth:`PromptBuilder.build` (a builder caches image token counts: keep one for many calls)."""
    builder = PromptBuilder(processor, config=config, token_budget=token_budget, chat_template=chat_template)
    from ret2vqa.images import load_image

    return builder.build(question, load_image(image), passages)
