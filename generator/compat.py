"""Loading processors on machines without ``torchvision``.

The processors of Qwen2-VL, Qwen2.5-VL, SmolVLM and LLaVA-OneVision carry a *video*
processor, and ``transformers`` can only build video processors with ``torchvision``.
On a CPU-only install without it (``pip install torch`` alone, or this project's CI),
``AutoProcessor.from_pretrained`` therefore fails for those families even though
ret2vqa never sends a video. :func:`image_only_processor_class` derives, from such a
processor class, one whose constructor takes no video processor: everything else (the
image processor, the tokenizer, the placeholder expansion, the chat template) is the
original class's code (``apply_chat_template`` falls back to the generic one, since
some overrides only read video sampling defaults).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

VIDEO_ATTRIBUTE = "video_processor"


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def needs_video_processor(processor_class: type) -> bool:
    """True when ``processor_class`` expects a video processor (so cannot be built without torchvision)."""
    try:
        return VIDEO_ATTRIBUTE in processor_class.get_attributes()
    except Exception:  # pragma: no cover - not a ProcessorMixin
        return False


@functools.cache
def image_only_processor_class(processor_class: type) -> type:
    """A subclass of ``processor_class`` without the ``video_processor`` attribute.

    ``ProcessorMixin`` discovers its sub-processors from the ``__init__`` signature, so
    the subclass exposes the same signature minus ``video_processor`` and passes ``None``
    for it to the original ``__init__``.
    """
    if not needs_video_processor(processor_class):
        return processor_class
    __init__ = _init_without_video(processor_class)

    def apply_chat_template(self, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
        # Some overrides only add video sampling defaults read from the video processor
        # (SmolVLM); without one, the generic implementation is the right one.
        from transformers.processing_utils import ProcessorMixin

        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    return type(
        processor_class.__name__,
        (processor_class,),
        {
            "__init__": __init__,
            "apply_chat_template": apply_chat_template,
            "__module__": processor_class.__module__,
            "__doc__": f"{processor_class.__name__} without a video processor (torchvision is not installed).",
        },
    )


def _init_without_video(processor_class: type) -> Any:
    """``processor_class.__init__`` minus the ``video_processor`` parameter, as a real function.

    ``ProcessorMixin.from_pretrained`` reads the accepted keyword arguments from the
    ``__init__`` code object (``co_varnames``), so a ``*args, **kwargs`` wrapper would
    silently drop every saved setting (``image_seq_len``, ``patch_size``...). The wrapper
    is therefore generated with the original's explicit parameters and defaults.
    """
    signature = inspect.signature(processor_class.__init__)
    defaults: dict[str, Any] = {}
    params, call = [], []
    for name, param in signature.parameters.items():
        if name == VIDEO_ATTRIBUTE:
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            params.append(f"**{name}")
            call.append(f"**{name}")
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            params.append(f"*{name}")
            call.append(f"*{name}")
        elif name == "self":
            params.append(name)
        else:
            if param.kind is inspect.Parameter.KEYWORD_ONLY and not any(p.startswith("*") for p in params):
                params.append("*")
            if param.default is inspect.Parameter.empty:
                params.append(name)
            else:
                defaults[name] = param.default
                params.append(f"{name}=__defaults[{name!r}]")
            call.append(f"{name}={name}")
    source = (
        f"def __init__({', '.join(params)}):\n"
        f"    __original(self, {VIDEO_ATTRIBUTE}=None, {', '.join(call)})\n"
    )
    namespace: dict[str, Any] = {"__defaults": defaults, "__original": processor_class.__init__}
    exec(compile(source, f"<image-only {processor_class.__name__}.__init__>", "exec"), namespace)  # noqa: S102
    return namespace["__init__"]
