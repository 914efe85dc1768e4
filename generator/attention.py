"""``sdpa_unpadded``: PyTorch SDPA that runs a padded batch's prefill one prompt at a time.

Why: a batch of left-padded prompts normally reaches ``scaled_dot_product_attention`` as one
``(B, H, L, L)`` call with a materialised 4D mask (padding + causal), padded to the longest
prompt. On CPU that loses SDPA's causal fast path (which skips the upper triangle) and pays
for the padding, so batched prefill attention costs *more* per prompt than one prompt alone
(measured on the tiny config: ~6 vs ~3 ms per request at batch 8; docs/serve.md). Attention
is the only part of a forward pass that does not batch well; the projections and MLPs do.

This implementation keeps everything else batched and, only in attention:

* prefill (query length = key length, no cache offset): each row's non-padded suffix goes
  through SDPA with ``is_causal=True`` and no mask, exactly what a batch of one does; the
  padded positions' outputs are zeros (no real token ever attends to them);
* decoding steps and anything else: SDPA with a boolean key-padding mask (broadcast, never
  materialised as ``(B, 1, Q, K)`` for a single query), plus the causal part when needed.

On CPU the per-prompt prefill calls are spread over the cores that torch's own intra-op pool
leaves idle (:func:`spare_threads`; e.g. a server with ``serve.torch_threads: 1`` on 2 cores):
each call releases the GIL, so the prompts of a batch run side by side on helper threads. The outputs are the same, bit for bit: each piece is the
same SDPA call on the same slice. With torch's default (one intra-op thread per core) nothing is
left idle and every call stays on the calling thread, where SDPA parallelises by itself.

The mask handed to it is the 2D padding mask (transformers' flash-attention mask function,
``None`` when nothing is padded), so transformers builds no 4D mask either. Answers are the
same as with ``sdpa`` up to float rounding; a one-prompt batch takes the plain SDPA path.
Select it with ``generator.attn_implementation: sdpa_unpadded`` (the language model only;
vision towers keep their own implementation).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

#: The ``generator.attn_implementation`` value that selects this module's attention.
NAME = "sdpa_unpadded"

_registered = False


def register() -> None:
    """Make ``sdpa_unpadded`` known to transformers' attention and mask interfaces (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, unpadded_sdpa_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)  # the 2D padding mask, or None
    _registered = True


def use_unpadded_attention(model: Any) -> bool:
    """Switch ``model``'s language model to ``sdpa_unpadded``; ``False`` when the model cannot switch.

    Vision/audio towers keep their implementation: their attention is bidirectional and
    unpadded already.
    """
    register()
    config = model.config
    text_key = next((key for key in ("text_config", "language_config", "llm_config")
                     if getattr(config, key, None) is not None), None)
    if not getattr(model, "_can_set_attn_implementation", lambda: False)():
        return False
    model.set_attn_implementation({text_key: NAME} if text_key else NAME)
    target = getattr(config, text_key) if text_key else config
    return getattr(target, "_attn_implementation", None) == NAME


def unpadded_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention function: ``(B, H, Q, D)`` tensors in, ``(B, Q, H, D)`` out (see the module doc)."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    q_len, kv_len = query.shape[2], key.shape[2]
    mask = attention_mask
    if mask is None or mask.dim() != 2 or not is_causal or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    mask = mask[:, -kv_len:].to(torch.bool)
    groups = getattr(module, "num_key_value_groups", 1)
    gqa = {"enable_gqa": True} if groups > 1 else {}
    if q_len == kv_len and q_len > 1:
        starts = (~mask).sum(dim=1).tolist()
        contiguous = all(bool(mask[b, s:].all()) for b, s in enumerate(starts))
        if contiguous:  # left padding: prefill each prompt's own tokens with the causal fast path
            out = query.new_zeros(query.shape[0], query.shape[1], q_len, value.shape[-1])

            def prefill(b: int) -> None:
                s = starts[b]
                out[b : b + 1, :, s:] = torch.nn.functional.scaled_dot_product_attention(
                    query[b : b + 1, :, s:], key[b : b + 1, :, s:], value[b : b + 1, :, s:],
                    dropout_p=dropout, scale=scaling, is_causal=True, **gqa,
                )

            rows = [(b, q_len - s) for b, s in enumerate(starts) if s < q_len]
            workers = spare_threads() if query.device.type == "cpu" else 1
            run_spread(prefill, _prefill_pieces(rows, workers))
            return out.transpose(1, 2).contiguous(), None
    # decoding (or an unusual layout): a boolean key mask broadcast over heads and queries
    keep = mask[:, None, None, :]
    if q_len > 1:  # causal part, aligned to the end of the keys (cache before the queries)
        offset = kv_len - q_len
        q_idx = torch.arange(q_len, device=mask.device)[:, None] + offset
        keep = keep & (torch.arange(kv_len, device=mask.device)[None, :] <= q_idx)[None, None]
    if groups > 1 and q_len > 1:
        key, value, gqa = repeat_kv(key, groups), repeat_kv(value, groups), {}
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=keep, dropout_p=dropout, scale=scaling, is_causal=False, **gqa,
    )
    return out.transpose(1, 2).contiguous(), None


# ---------------------------------------------------------------------- spreading prefill over idle cores
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def spare_threads() -> int:
    """How many threads the per-prompt prefill calls may use: the cores that torch's intra-op pool
    leaves idle, plus the calling thread (1: all on the calling thread)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, torch.get_num_threads()))


def _prefill_pieces(rows: list[tuple[int, int]], workers: int) -> list[list[int]]:
    """The rows each of up to ``workers`` threads prefills, balanced by cost (a causal prefill costs
    about the square of its length): longest first, each to the least loaded thread."""
    loads = [0] * max(1, min(workers, len(rows)))
    pieces: list[list[int]] = [[] for _ in loads]
    for b, length in sorted(rows, key=lambda row: -row[1]):
        least = loads.index(min(loads))
        loads[least] += length * length
        pieces[least].append(b)
    return pieces


def run_spread(work: Callable[[int], None], pieces: list[list[int]]) -> None:
    """``work(row)`` for every row: the first list on the calling thread, each other list on a helper
    thread, under the caller's inference and grad modes (thread-local in torch)."""
    import torch

    def run(rows: list[int]) -> None:
        for b in rows:
            work(b)

    if len(pieces) < 2:
        run(pieces[0] if pieces else [])
        return
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run_as_caller(rows: list[int]) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            run(rows)

    pool = _helpers(len(pieces) - 1)
    helpers = [pool.submit(run_as_caller, rows) for rows in pieces[1:]]
    try:
        run(pieces[0])
    finally:
        for helper in helpers:
            helper.result()  # re-raises a helper's error


def _helpers(count: int) -> ThreadPoolExecutor:
    """The shared helper threads (created on first use, grown when more are wanted)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < count:
            if _pool is not None:
                _pool.shutdown(wait=False)  # what it was given still runs
            _pool, _pool_size = ThreadPoolExecutor(count, thread_name_prefix="ret2vqa-prefill"), count
        return _pool
