"""What this installation can run: versions, devices, the model cache, and which configured models are local.

Used by ``ret2vqa doctor`` (a report) and by ``ret2vqa demo`` (to stop before any work
with one message naming every model that is missing, instead of failing halfway).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ret2vqa.hub import (
    cached_model_dir,
    download_command,
    hub_cache_dir,
    hub_endpoint,
    hub_reachable,
    is_offline,
    is_tiny_model,
    looks_like_path,
    ret2vqa_cache_dir,
)

PACKAGES = ("ret2vqa", "torch", "transformers", "accelerate", "tokenizers", "huggingface_hub", "datasets", "evaluate",
            "qdrant-client", "qdrant-edge-py", "langchain-core", "pillow", "numpy", "bitsandbytes")

TRAIN_HINT = "train one with `ret2vqa train --config configs/train/m2kr-clip-vit-b32.yaml` (its output is `final/`)"


@dataclass
class ModelStatus:
    """One model a config refers to, and whether it can be loaded without a download."""

    role: str  # "encoder", "generator"
    name_or_path: str
    revision: str | None
    kind: str  # "tiny" (built in code), "local" (a directory), "hub"
    available: bool
    location: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def devices() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "gpus": []}
    if info["cuda"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                                 "bf16": torch.cuda.is_bf16_supported()})
    info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    try:
        import bitsandbytes  # noqa: F401

        info["bitsandbytes"] = "installed" + ("" if info["cuda"] else " (4/8-bit loading still needs CUDA)")
    except Exception as exc:  # ImportError, or a CUDA setup error raised at import
        info["bitsandbytes"] = f"not usable: {type(exc).__name__}"
    return info


def cache() -> dict[str, Any]:
    return {"hf_hub_cache": hub_cache_dir(), "offline": is_offline(), "hf_home": os.environ.get("HF_HOME"),
            "ret2vqa_cache": ret2vqa_cache_dir()}


def released_checkpoints() -> list[dict[str, Any]]:
    """The published ReT checkpoints ret2vqa loads (converted on first use), and whether each is cached here."""
    from retriever.convert import RELEASED_CHECKPOINTS

    out = []
    for hub_id, info in RELEASED_CHECKPOINTS.items():
        local = cached_model_dir(hub_id)
        out.append({"name_or_path": hub_id, "base_model": info["base_model"], "layer_strategy": info["strategy"],
                    "config": info["config"], "available": local is not None, "location": local})
    return out


def model_status(role: str, name_or_path: str, revision: str | None) -> ModelStatus:
    """Whether one model can be loaded without a download, and from where."""
    if is_tiny_model(name_or_path):
        return ModelStatus(role, name_or_path, revision, "tiny", True, None)
    local = cached_model_dir(name_or_path, revision)
    kind = "local" if Path(name_or_path).expanduser().is_dir() or looks_like_path(name_or_path) else "hub"
    return ModelStatus(role, name_or_path, revision, kind, local is not None, local)


def model_statuses(config: Any) -> list[ModelStatus]:
    """The encoder and generator a :class:`rag.config.PipelineConfig` names, and whether each is local.

    An empty encoder (the collection's own is used) is not listed: it is known only once a
    collection is opened.
    """
    out = []
    if config.encoder.given:
        out.append(model_status("encoder", config.encoder.name_or_path, config.encoder.revision))
    if config.generator is not None:
        out.append(model_status("generator", config.generator.model, config.generator.revision))
    return out


def fetch_missing(statuses: list[ModelStatus]) -> list[ModelStatus]:
    """Download the hub models that are not cached (unless offline); returns the statuses afterwards."""
    from ret2vqa.hub import ModelUnavailableError, resolve_model

    out = []
    for s in statuses:
        if not s.available and s.kind == "hub" and not is_offline() and hub_reachable():
            try:
                s = ModelStatus(**{**s.to_dict(), "available": True,
                                   "location": resolve_model(s.name_or_path, s.revision)})
            except ModelUnavailableError:
                pass
        out.append(s)
    return out


def missing_models_message(statuses: list[ModelStatus], config_name: str) -> str | None:
    """One message naming every unavailable model and how to get it; ``None`` if all are available."""
    missing = [s for s in statuses if not s.available]
    if not missing:
        return None
    if is_offline():
        reason = "offline mode is on (HF_HUB_OFFLINE=1)"
    elif not hub_reachable():
        reason = f"not cached, and the hub ({hub_endpoint()}) cannot be reached"
    else:
        reason = "not cached, and the hub could not provide it"
    lines = [f"{len(missing)} model(s) named in {config_name} are not available locally:"]
    for s in missing:
        field = "encoder.name_or_path" if s.role == "encoder" else "generator.model"
        if s.kind == "local":
            hint = f"no such directory; {TRAIN_HINT}, or set {field} to a ReT-2 checkpoint" if s.role == "encoder" \
                else f"no such directory; set {field} to a local model directory or a hub id"
            lines.append(f"  - {s.role}: {s.name_or_path} ({hint})")
        else:
            lines.append(f"  - {s.role}: {s.name_or_path} ({reason}); fetch it once with "
                         f"`{download_command(s.name_or_path, s.revision)}`, or set {field} to a local directory")
    lines.append(f"  The Hugging Face cache here is {hub_cache_dir()}. "
                 "To try the whole pipeline offline now: `ret2vqa demo --tiny` (tiny random models).")
    return "\n".join(lines)


def report(configs: dict[str, Any]) -> dict[str, Any]:
    """Everything ``ret2vqa doctor`` prints, as data."""
    return {
        "versions": versions(),
        "devices": devices(),
        "cache": cache(),
        "models": {name: [s.to_dict() for s in model_statuses(cfg)] for name, cfg in configs.items()},
        "released_checkpoints": released_checkpoints(),
    }
