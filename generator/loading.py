"""Loading a checkpoint as configured: resolution, dtype, quantization, device map, processor.

Every path that can fail for a reason the user can fix ends in a message that names the
config field: a model that is not available offline (``ModelUnavailableError`` from
:mod:`ret2vqa.hub`), 4/8-bit quantization on a machine without CUDA or bitsandbytes
(:class:`QuantizationUnavailableError`), a checkpoint that is not an image-text-to-text
model, a processor that needs a package that is missing.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from ret2vqa.config import ConfigError
from ret2vqa.devices import cuda_available, resolve_dtype
from ret2vqa.hub import resolve_model

from .compat import image_only_processor_class, needs_video_processor, torchvision_available
from .config import GeneratorConfig

logger = logging.getLogger(__name__)


class QuantizationUnavailableError(ConfigError):
    """4/8-bit loading was asked for but this machine cannot do it (no CUDA GPU, or no bitsandbytes).

    A :class:`~ret2vqa.errors.ConfigError`: the fix is a config change (turn quantization off,
    or allow the fallback), so the CLI reports it in one line."""


def bitsandbytes_available() -> bool:
    from transformers.utils import is_bitsandbytes_available

    return bool(is_bitsandbytes_available())


def run_device(cfg: GeneratorConfig) -> str:
    """Where the model's weights will mostly live: ``"cuda"`` or ``"cpu"`` (what ``dtype: auto`` follows)."""
    device_map = cfg.device_map
    if cfg.quantization is not None:
        return "cuda"
    if isinstance(device_map, dict):
        on_gpu = any(isinstance(v, int) or str(v).startswith("cuda") for v in device_map.values())
        return "cuda" if on_gpu and cuda_available() else "cpu"
    if device_map in (None, "auto"):
        return "cuda" if cuda_available() else "cpu"
    return "cuda" if str(device_map).startswith("cuda") else "cpu"


def torch_dtype(cfg: GeneratorConfig) -> Any:
    """The weights' ``torch`` dtype; ``auto`` as everywhere (:mod:`ret2vqa.devices`): bfloat16 on a GPU, float32 on CPU."""
    return resolve_dtype(cfg.dtype, run_device(cfg), "generator.dtype")


def quantization_config(
    cfg: GeneratorConfig, *, cuda: bool | None = None, bitsandbytes: bool | None = None
) -> Any | None:
    """The ``BitsAndBytesConfig`` for ``cfg``, or ``None`` when it asks for no quantization.

    4/8-bit ``bitsandbytes`` kernels need a CUDA GPU. When it (or the package) is missing,
    this raises :class:`QuantizationUnavailableError`, unless
    ``cfg.allow_quantization_fallback`` is set: then it warns and returns ``None`` (the
    model loads unquantized). ``cuda`` / ``bitsandbytes`` override the detection.
    """
    if cfg.quantization is None:
        return None
    field = "load_in_4bit" if cfg.load_in_4bit else "load_in_8bit"
    cuda = cuda_available() if cuda is None else cuda
    bitsandbytes = bitsandbytes_available() if bitsandbytes is None else bitsandbytes
    problem = None
    if not cuda:
        problem = (
            f"{field}: {cfg.quantization} quantization (bitsandbytes) needs a CUDA GPU, and this machine has none "
            "(torch.cuda.is_available() is False)"
        )
    elif not bitsandbytes:
        problem = (
            f"{field}: {cfg.quantization} quantization needs the bitsandbytes package: "
            "pip install bitsandbytes (or pip install 'ret2vqa[gpu]')"
        )
    if problem is not None:
        if not cfg.allow_quantization_fallback:
            raise QuantizationUnavailableError(
                f"{problem}. Set {field}: false, or allow_quantization_fallback: true to load '{cfg.model}' "
                f"unquantized ({cfg.dtype}) instead."
            )
        message = f"{problem}; loading '{cfg.model}' unquantized ({cfg.dtype}) instead (allow_quantization_fallback)."
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logger.warning(message)
        return None

    import torch
    from transformers import BitsAndBytesConfig

    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype)
    if compute is None:  # auto / float32: bfloat16 where the GPU supports it, else float16
        compute = resolve_dtype("auto", "cuda")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
    )


def model_load_kwargs(cfg: GeneratorConfig, quantization: Any | None) -> dict[str, Any]:
    """Keyword arguments for ``AutoModelForImageTextToText.from_pretrained``."""
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg), "trust_remote_code": cfg.trust_remote_code}
    device_map = cfg.device_map
    if quantization is not None and device_map in (None, "cpu"):
        device_map = "auto"  # quantized weights must live on the GPU
    if device_map is not None:
        kwargs["device_map"] = device_map
    if cfg.max_memory:
        kwargs["max_memory"] = {_device_key(k): v for k, v in cfg.max_memory.items()}
    if cfg.offload_folder:
        kwargs["offload_folder"] = cfg.offload_folder
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if cfg.attn_implementation:  # sdpa_unpadded: loaded with sdpa, the generator switches its language model
        kwargs["attn_implementation"] = "sdpa" if cfg.attn_implementation == "sdpa_unpadded" else cfg.attn_implementation
    kwargs.update(cfg.model_kwargs)
    return kwargs


def _device_key(key: Any) -> Any:
    """YAML gives ``0`` or ``"0"`` for GPU 0; accelerate wants the int."""
    return int(key) if isinstance(key, str) and key.isdigit() else key


def processor_class_for(path: str) -> type | None:
    """The processor class a checkpoint directory declares (``processor_config.json`` or its model type)."""
    from transformers.models.auto.processing_auto import processor_class_from_name

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = Path(path) / name
        if file.is_file():
            try:
                declared = json.loads(file.read_text(encoding="utf-8")).get("processor_class")
            except (OSError, ValueError):
                declared = None
            if declared:
                cls = processor_class_from_name(declared)
                if cls is not None:
                    return cls
    try:
        from transformers import AutoConfig
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        config = AutoConfig.from_pretrained(path)
        return PROCESSOR_MAPPING[type(config)]
    except Exception:
        return None


def load_processor(path: str, cfg: GeneratorConfig) -> Any:
    """``AutoProcessor.from_pretrained``, image-only where a video processor cannot be built."""
    from transformers import AutoProcessor

    kwargs = dict(cfg.processor_kwargs)
    declared = processor_class_for(path)
    if declared is not None and needs_video_processor(declared) and not torchvision_available():
        logger.info("torchvision is not installed: loading %s without its video processor", declared.__name__)
        return _load_with(image_only_processor_class(declared), path, cfg, kwargs)
    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"model: the processor of '{cfg.model}' needs a package that is missing: {exc}") from exc
    except Exception as exc:
        if declared is not None and needs_video_processor(declared):
            # e.g. a checkpoint saved without its video processor config
            logger.info("AutoProcessor failed (%s); loading %s without its video processor", exc, declared.__name__)
            return _load_with(image_only_processor_class(declared), path, cfg, kwargs)
        raise ConfigError(f"model: could not load the processor of '{cfg.model}': {type(exc).__name__}: {exc}") from exc


def _load_with(cls: type, path: str, cfg: GeneratorConfig, kwargs: dict[str, Any]) -> Any:
    try:
        return cls.from_pretrained(path, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"model: the processor of '{cfg.model}' needs a package that is missing: {exc}") from exc


def load_model(path: str, cfg: GeneratorConfig, quantization: Any | None) -> Any:
    """``AutoModelForImageTextToText.from_pretrained`` with a clear error for unsupported checkpoints."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs = model_load_kwargs(cfg, quantization)
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc) or "does not recognize this architecture" in str(exc):
            try:
                model_type = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code).model_type
            except Exception:
                model_type = "unknown"
            raise ConfigError(
                f"model: '{cfg.model}' (model type {model_type!r}) is not an image-text-to-text model that "
                "transformers' AutoModelForImageTextToText can load; use e.g. a Qwen2-VL / Qwen2.5-VL, LLaVA "
                "(1.5 / NeXT / OneVision), Idefics3 or SmolVLM checkpoint"
            ) from exc
        raise
    except ImportError as exc:
        raise ConfigError(f"model: loading '{cfg.model}' needs a package that is missing: {exc}") from exc
    model.eval()
    return model


def load(cfg: GeneratorConfig) -> tuple[Any, Any]:
    """Resolve ``cfg.model`` (offline-aware), then load and return ``(model, processor)``."""
    quantization = quantization_config(cfg)  # fail fast, before touching the hub
    path = resolve_model(cfg.model, cfg.revision, config_field="generator.model")
    processor = load_processor(path, cfg)
    model = load_model(path, cfg, quantization)
    return model, processor
