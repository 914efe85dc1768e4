"""Devices and dtypes: one meaning of ``device`` and ``dtype: auto`` for every model the project loads.

``dtype: auto`` means the same thing for the encoder and the generator: **bfloat16 on a
CUDA GPU that supports it (float16 on older GPUs), float32 on the CPU**. That is the
fastest precision each device runs well; a checkpoint's stored dtype says how it was
saved, not how it should run (bfloat16 matmuls are slow on most CPUs).
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: Any = None, field: str = "device") -> Any:
    """A ``torch.device``: the given one (checked to exist), else the first GPU, else the CPU.

    Asking for CUDA on a machine without it is a :class:`ConfigError` naming ``field``,
    instead of a traceback from the first tensor moved there.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"not a device: {device!r} (use cpu, cuda, cuda:N or auto)", field) from exc
    if resolved.type == "cuda":
        if not cuda_available():
            raise ConfigError(f"{device!r} asked for, but this machine has no CUDA GPU "
                              f"(torch.cuda.is_available() is False); use cpu or auto", field)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"{device!r}: this machine has {torch.cuda.device_count()} GPU(s)", field)
    return resolved


def resolve_dtype(dtype: Any, device: Any, field: str = "dtype") -> Any:
    """A ``torch.dtype`` for running on ``device``; ``None``/``"auto"`` as explained in the module docstring."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    device = torch.device(device) if not isinstance(device, torch.device) else device
    name = _ALIASES.get(str(dtype), dtype)
    if name in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if cuda_available() and torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r} (use {', '.join(DTYPES)})", field) from None
