"""The multimodal generator: prompts in, short answers out, in batches.

:class:`MultimodalGenerator` wraps any ``transformers`` image-text-to-text model and its
processor. For each request it loads the image, builds the prompt within the token
budget (:mod:`generator.prompt`), runs batched generation (greedy by default, left
padding, requests with and without an image batched apart) and post-processes the
decoded text into a short answer (:mod:`generator.postprocess`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ret2vqa.errors import ConfigError
from ret2vqa.images import load_image

from .attention import NAME as UNPADDED_ATTENTION
from .attention import use_unpadded_attention
from .config import GeneratorConfig
from .postprocess import postprocess_answer
from .prompt import BuiltPrompt, PromptBuilder
from .schema import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

# Requests whose images and prompts are prepared at once: bounds memory on long lists
# while leaving room to group similar lengths into the same batch.
_WINDOW_BATCHES = 4


class MultimodalGenerator:
    """Answers questions about images from retrieved passages with a multimodal LLM.

    Build one with :meth:`from_config` / :meth:`from_pretrained` (loads a checkpoint), or
    wrap an already loaded ``model`` and ``processor`` directly. Generation is
    deterministic with the default greedy decoding, and batching does not change answers.
    """

    def __init__(self, model: Any, processor: Any, config: GeneratorConfig | None = None):
        self.model = model
        self.processor = processor
        self.config = config or GeneratorConfig(model=getattr(model, "name_or_path", "") or "in-memory")
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batched generation pads on the left
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prompt_builder = PromptBuilder(
            processor,
            config=self.config.prompt,
            token_budget=self.config.context_token_budget,
            chat_template=self.config.chat_template,
            max_question_tokens=self.config.max_question_tokens,
            long_question=self.config.long_question,
        )
        self.generation_config = self._generation_config()
        if self.config.attn_implementation == UNPADDED_ATTENTION and not use_unpadded_attention(model):
            raise ConfigError(f"{type(model).__name__} cannot switch its attention implementation",
                              "generator.attn_implementation")

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: GeneratorConfig) -> MultimodalGenerator:
        """Load ``config.model`` (hub id or local directory) as configured.

        Raises ``ModelUnavailableError`` when the model is neither local, cached nor
        downloadable, and :class:`~generator.loading.QuantizationUnavailableError` when
        4/8-bit is asked for without CUDA (unless ``allow_quantization_fallback``).
        (``tiny-random/<family>`` models are built by the composition root,
        :func:`rag.components.build_generator`.)
        """
        from .loading import load

        model, processor = load(config)
        return cls(model, processor, config)

    @classmethod
    def from_pretrained(cls, model: str, **settings: Any) -> MultimodalGenerator:
        """``from_config(GeneratorConfig(model=model, **settings))``."""
        return cls.from_config(GeneratorConfig(model=model, **settings))

    def _generation_config(self) -> Any:
        cfg = self.config
        gen = copy.deepcopy(self.model.generation_config)
        gen.max_new_tokens = cfg.max_new_tokens
        gen.max_length = None
        gen.do_sample = cfg.do_sample
        gen.num_beams = cfg.num_beams
        if cfg.do_sample:
            gen.temperature = cfg.temperature
            gen.top_p = cfg.top_p
        else:  # checkpoints often ship sampling defaults; unset them so greedy decoding is plain greedy
            gen.temperature = None
            gen.top_p = None
            gen.top_k = None
        if gen.pad_token_id is None:
            gen.pad_token_id = self.tokenizer.pad_token_id
        eos = gen.eos_token_id
        eos_ids = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(self.tokenizer.eos_token_id)  # the chat template's end of turn
        gen.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
        return gen

    # ------------------------------------------------------------- properties
    @property
    def model_type(self) -> str:
        """The checkpoint's ``model_type`` (``qwen2_vl``, ``idefics3``, ``llava_onevision``...)."""
        return str(getattr(self.model.config, "model_type", "unknown"))

    @property
    def input_device(self) -> Any:
        """Where inputs go: the device of the input embeddings (first shard under a device map)."""
        return self.model.get_input_embeddings().weight.device

    def __repr__(self) -> str:
        return (
            f"MultimodalGenerator(model={self.config.model!r}, type={self.model_type}, "
            f"device={self.input_device}, dtype={self.model.dtype})"
        )

    # ------------------------------------------------------------- generation
    def build_prompt(self, question: str, image: Any = None, passages: Sequence[Any] = ()) -> BuiltPrompt:
        """The prompt this generator would use for one request (see :mod:`generator.prompt`)."""
        return self.prompt_builder.build(question, load_image(image), passages)

    def answer(self, question: str, image: Any = None, passages: Sequence[Any] = ()) -> str:
        """The short answer to one question (``passages`` empty: zero-shot)."""
        return self.generate([GenerationRequest(question=question, image=image, passages=list(passages))])[0].answer

    def generate(
        self,
        requests: Iterable[GenerationRequest | Mapping[str, Any]],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        prompts: Sequence[BuiltPrompt] | None = None,
    ) -> list[GenerationResult]:
        """Answer ``requests`` in batches of ``batch_size`` (default: the config's); results keep the input order.

        A request is a :class:`GenerationRequest` or a mapping with ``question`` and
        optional ``image`` / ``passages``. ``progress`` shows a progress bar. ``prompts``:
        the requests' prompts when the caller has built them already (:meth:`build_prompt`,
        e.g. to report them before generating), so they are not built twice.
        """
        import torch
        from tqdm.auto import tqdm

        items = [_as_request(r, i) for i, r in enumerate(requests)]
        if prompts is not None and len(prompts) != len(items):
            raise ValueError(f"got {len(items)} requests but {len(prompts)} prompts")
        batch_size = batch_size or self.config.batch_size
        if batch_size < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", "batch_size")
        if self.config.do_sample and self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        results: list[GenerationResult | None] = [None] * len(items)
        window = batch_size * _WINDOW_BATCHES
        with tqdm(total=len(items), desc="generating", unit="q", disable=not progress) as bar:
            for start in range(0, len(items), window):
                prepared = [
                    (i, prompts[i] if prompts is not None else self.build_prompt(r.question, r.image, r.passages))
                    for i, r in enumerate(items[start : start + window], start=start)
                ]
                for batch in _batches(prepared, batch_size):
                    for (i, built), (raw, n_tokens, n_new) in zip(batch, self._generate_batch([b for _, b in batch])):
                        if n_tokens != built.num_tokens:  # pragma: no cover - would be a counting bug
                            logger.debug("prompt of request %d: counted %d tokens, processor gave %d", i, built.num_tokens, n_tokens)
                        answer = postprocess_answer(raw) if self.config.postprocess else raw.strip()
                        results[i] = GenerationResult(
                            answer=answer,
                            raw_text=raw,
                            prompt_tokens=n_tokens,
                            passages_used=built.passages_used,
                            truncated=built.truncated,
                            prompt=built.text,
                            completion_tokens=n_new,
                        )
                    bar.update(len(batch))
        return [r for r in results if r is not None]

    def stream(self, request: GenerationRequest | Mapping[str, Any], *,
               prompt: BuiltPrompt | None = None) -> GenerationStream:
        """Generate the answer to one request, yielding its text as the model produces it.

        Iterate the returned :class:`GenerationStream` for the text pieces (as decoded, not
        post-processed: :func:`generator.postprocess.postprocess_answer` of the joined text
        is what :meth:`generate` returns as ``answer``); afterwards it holds the prompt and
        the token counts. ``prompt``: the request's prompt when already built
        (:meth:`build_prompt`). Generation runs in a background thread, as
        ``transformers``' ``TextIteratorStreamer`` requires.
        """
        item = _as_request(request, 0)
        built = prompt if prompt is not None else self.build_prompt(item.question, item.image, item.passages)
        return GenerationStream(self, built)

    def _model_inputs(self, prompts: list[BuiltPrompt]) -> dict[str, Any]:
        """The processor's tensors for prompts that all have, or all lack, an image, on the model's device."""
        import torch

        images = [[p.image] for p in prompts] if prompts[0].image is not None else None  # nested: one list per sample
        inputs = self.processor(
            text=[p.text for p in prompts],
            images=images,
            padding=True,
            return_tensors="pt",
            add_special_tokens=prompts[0].add_special_tokens,
        )
        device, dtype = self.input_device, self.model.dtype
        return {
            k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
            for k, v in inputs.items()
        }

    def _generate_batch(self, prompts: list[BuiltPrompt]) -> list[tuple[str, int, int]]:
        """Generate for prompts that all have, or all lack, an image; ``(text, prompt tokens, new tokens)`` each."""
        import torch

        inputs = self._model_inputs(prompts)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=self.generation_config)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        pad = self.generation_config.pad_token_id
        generated = (new_tokens != pad).sum(dim=1).tolist() if pad is not None else [new_tokens.shape[1]] * len(texts)
        return [(text.strip(), int(n), int(g)) for text, n, g in zip(texts, lengths, generated)]


class GenerationStream:
    """The text of one generation as it is produced (see :meth:`MultimodalGenerator.stream`).

    Iterate it once for the text pieces. ``prompt`` is the built prompt (``prompt.text``,
    ``prompt.num_tokens``); after the iteration ``text`` is the whole decoded text and
    ``completion_tokens`` the number of generated tokens. With beam search
    (``num_beams > 1``), which streamers cannot follow, the text comes as one piece.
    """

    def __init__(self, generator: MultimodalGenerator, prompt: BuiltPrompt):
        self.generator = generator
        self.prompt = prompt
        self.text = ""
        self.completion_tokens = 0
        self._started = False

    @property
    def prompt_tokens(self) -> int:
        return int(self.prompt.num_tokens)

    def __iter__(self) -> Iterator[str]:
        import threading

        import torch
        from transformers import TextIteratorStreamer

        if self._started:
            raise RuntimeError("a GenerationStream can be iterated once")
        self._started = True
        gen = self.generator
        if (gen.generation_config.num_beams or 1) > 1:  # transformers' streamers cannot follow beam search
            self.text, _, self.completion_tokens = gen._generate_batch([self.prompt])[0]
            if self.text:
                yield self.text
            return
        inputs = gen._model_inputs([self.prompt])
        stream = self

        class _Counting(TextIteratorStreamer):
            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:
                    stream.completion_tokens += int(value.numel())
                super().put(value)

        streamer = _Counting(gen.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    gen.model.generate(**inputs, generation_config=gen.generation_config, streamer=streamer)
            except BaseException as exc:  # re-raised in the consumer's thread
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="generator-stream", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    self.text += piece
                    yield piece
        finally:
            worker.join()
        if failure:
            raise failure[0]


def _as_request(obj: Any, index: int) -> GenerationRequest:
    if isinstance(obj, GenerationRequest):
        return obj
    if isinstance(obj, Mapping):
        unknown = set(obj) - {"question", "image", "passages"}
        if "question" not in obj or unknown:
            raise ValueError(
                f"request {index}: expected a GenerationRequest or a mapping with question/image/passages, "
                f"got keys {sorted(obj)}"
            )
        return GenerationRequest(question=obj["question"], image=obj.get("image"), passages=list(obj.get("passages") or []))
    raise TypeError(f"request {index}: expected a GenerationRequest, got {type(obj).__name__}")


def _batches(prepared: list[tuple[int, BuiltPrompt]], batch_size: int) -> Iterator[list[tuple[int, BuiltPrompt]]]:
    """Batches of prompts that agree on having an image, longest first (less padding)."""
    for has_image in (True, False):
        group = [item for item in prepared if (item[1].image is not None) == has_image]
        group.sort(key=lambda item: -item[1].num_tokens)
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


__all__ = ["GenerationStream", "MultimodalGenerator"]
