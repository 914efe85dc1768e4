"""Released ReT checkpoints (``model_type: "retriever"``) into :class:`~retriever.ReT2Model` checkpoints.

The authors published ReT-1 retrievers on the hub (``aimagelab/ReT-CLIP-ViT-L-14``,
``aimagelab/ReT-OpenCLIP-ViT-H-14``, ``aimagelab/ReT-OpenCLIP-ViT-G-14``); ReT-2's come
from the same code. Their parameter names are ours, so conversion is a renaming plus a
config translation (``docs/retriever.md``, "Released checkpoints"):

* the safetensors files are read directly (one file or a shard index): the reference
  loader itself no longer runs under transformers 5;
* the towers are stored once, under ``query_model``, nested one level deeper by
  transformers 4.x saves (``text_model.text_model.*``) than by 5.x saves; blocks past
  the deepest tapped layer are dropped (the model prunes them);
* the layer lists come from the config's ``layer_strategy``, the gate priors from the
  saved scalar buffers, ``use_pooler_features`` picks the pooled head over late
  interaction, ``share_query_passage_models`` one cell over a query and a document cell;
* ``ret_cell.sa_ln`` (never used) and ``ret_cell.query_state_ids`` (the same sinusoid
  our model recomputes) are dropped.

Everything is checked before anything is written: every key must map onto the model
and every shape must match, else one :class:`ConversionError` lists what did not. The
result is written into a temporary directory next to ``OUT`` and renamed into place,
so a failed conversion leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ret2vqa.errors import ConfigError, InputError, MissingFileError

logger = logging.getLogger(__name__)

RELEASED_MODEL_TYPE = "retriever"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
CONVERSION_RECORD = "ret2vqa_conversion.json"

#: Tapped blocks (indices into ``hidden_states[1:]``) per ReT layer strategy: (text, vision).
LAYER_STRATEGIES: dict[str, tuple[list[int], list[int]]] = {
    "clip_vit_b": (list(range(12)), list(range(12))),
    "clip_vit_l": (list(range(12)), list(range(0, 24, 2))),
    "openclip_vit_h": (list(range(1, 24, 2)), [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31]),
    "openclip_vit_g": ([*range(0, 30, 2), 31], list(range(2, 48, 3))),
}

#: The published checkpoints, the towers they were trained on (model cards' ``base_model``)
#: and the authors' M2KR numbers (ReT-1 README, recall@5 averaged over M2KR tasks).
RELEASED_CHECKPOINTS: dict[str, dict[str, Any]] = {
    "aimagelab/ReT-CLIP-ViT-L-14": {"base_model": "openai/clip-vit-large-patch14", "strategy": "clip_vit_l",
                                    "config": "configs/retrievers/ret-clip-vit-l-14.yaml"},
    "aimagelab/ReT-OpenCLIP-ViT-H-14": {"base_model": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
                                        "strategy": "openclip_vit_h",
                                        "config": "configs/retrievers/ret-openclip-vit-h-14.yaml"},
    "aimagelab/ReT-OpenCLIP-ViT-G-14": {"base_model": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                                        "strategy": "openclip_vit_g",
                                        "config": "configs/retrievers/ret-openclip-vit-g-14.yaml"},
}

#: Per-side config fields that must agree between the query and the passage side (one ReT2Config).
_SHARED_SIDE_FIELDS = ("layer_strategy", "num_queries", "hidden_size", "late_proj_output_size",
                       "use_pooler_features", "use_tanh", "activation_fn")
_SIDES = {"query_model": "", "passage_model": "document_"}
_CELL_PARTS = ("text_adapter.", "vision_adapter.", "ret_cell.", "late_proj.")
_DROPPED_CELL_KEYS = re.compile(r"^ret_cell\.(sa_ln\..*|query_state_ids|input_gate_bias_prior|forget_gate_bias_prior)$")
_BLOCK = re.compile(r"^encoder\.layers\.(\d+)\.")


class ConversionError(InputError):
    """A released checkpoint that cannot be converted (the message names the file or keys)."""


# ----------------------------------------------------------------------------------------
# Reading a released checkpoint
# ----------------------------------------------------------------------------------------


def is_released_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a released ReT checkpoint (``config.json`` with ``model_type: "retriever"``)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type") == RELEASED_MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def read_released_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a released checkpoint; another ``model_type`` is refused by name."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise MissingFileError(path, "checkpoint config")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != RELEASED_MODEL_TYPE:
        hint = " (already a ReT-2 checkpoint in our format: load it directly)" if model_type == "ret2" else ""
        raise ConversionError(f"{path}: model_type {model_type!r} is not a released ReT checkpoint "
                              f"(expected {RELEASED_MODEL_TYPE!r}){hint}")
    for side in ("query_config",):
        if not isinstance(config.get(side), dict):
            raise ConversionError(f"{path}: '{side}' is missing or not an object")
    return config


def weight_files(directory: str | os.PathLike) -> dict[Path, list[str] | None]:
    """The safetensors files of a checkpoint: ``{file: keys the index assigns it}`` (``None``: a single file)."""
    directory = Path(directory)
    index = directory / SAFE_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConversionError(f"{index}: not a safetensors index (no 'weight_map': {exc})") from exc
        files: dict[Path, list[str]] = {}
        for key, name in weight_map.items():
            files.setdefault(directory / name, []).append(key)
        for path in files:
            if not path.is_file():
                raise MissingFileError(path, f"weight shard named by {index}")
        return dict(files)
    single = directory / SAFE_WEIGHTS
    if single.is_file():
        return {single: None}
    raise MissingFileError(single, f"checkpoint weights ({SAFE_WEIGHTS} or {SAFE_INDEX})")


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, read straight from its safetensors file(s)."""
    from safetensors import safe_open

    weights: dict[str, torch.Tensor] = {}
    for path, expected in weight_files(directory).items():
        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = list(fh.keys())
                for key in keys:
                    weights[key] = fh.get_tensor(key)
        except Exception as exc:  # safetensors raises its own error types for truncated / corrupt files
            raise ConversionError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc}); "
                                  "the download may be incomplete") from exc
        if expected is not None:
            absent = sorted(set(expected) - set(keys))
            if absent:
                raise ConversionError(f"{path}: lacks {len(absent)} tensor(s) its index assigns it, e.g. "
                                      f"{', '.join(absent[:5])}")
    return weights


# ----------------------------------------------------------------------------------------
# Config and weight mapping
# ----------------------------------------------------------------------------------------


def _sub_config(side: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = side.get(name)
    if not isinstance(value, dict):
        raise ConversionError(f"{where}: '{name}' is missing or not an object")
    return {k: v for k, v in value.items()
            if not k.startswith("_") and k not in ("transformers_version", "architectures", "model_type")}


def _layer_lists(side: Mapping[str, Any], where: str) -> tuple[list[int], list[int]]:
    if "text_layers" in side and "vision_layers" in side:  # explicit lists win over a strategy name
        return list(side["text_layers"]), list(side["vision_layers"])
    strategy = side.get("layer_strategy")
    if strategy not in LAYER_STRATEGIES:
        raise ConversionError(f"{where}: unknown layer_strategy {strategy!r} (known: {', '.join(LAYER_STRATEGIES)})")
    return LAYER_STRATEGIES[strategy]


def _scalar(weights: Mapping[str, torch.Tensor], key: str, default: float) -> float:
    value = weights.get(key)
    return float(value.reshape(-1)[0]) if value is not None and value.numel() == 1 else float(default)


def build_config(released: Mapping[str, Any], weights: Mapping[str, torch.Tensor], backbone_name: str | None,
                 where: str = "config.json") -> Any:
    """The :class:`~retriever.ReT2Config` that reproduces a released checkpoint's forward."""
    from transformers import CLIPConfig

    from .configuration_ret2 import ReT2Config

    query = released["query_config"]
    share = bool(released.get("share_query_passage_models", False))
    passage = released.get("passage_config") if not share else None
    if not share:
        if not isinstance(passage, dict):
            raise ConversionError(f"{where}: share_query_passage_models is false but 'passage_config' is missing")
        differ = [f for f in _SHARED_SIDE_FIELDS if query.get(f) != passage.get(f)]
        if differ:
            raise ConversionError(f"{where}: the query and passage configs differ in {', '.join(differ)}; "
                                  "a ReT-2 model needs both sides the same shape")
    text_layers, vision_layers = _layer_lists(query, f"{where}: query_config")
    hidden = int(query.get("hidden_size", 1024))
    activation = query.get("activation_fn", "gelu")
    if activation not in ("gelu", "relu"):
        raise ConversionError(f"{where}: query_config.activation_fn {activation!r} is not supported (gelu, relu)")
    backbone = CLIPConfig(text_config=_sub_config(query, "text_config", f"{where}: query_config"),
                          vision_config=_sub_config(query, "vision_config", f"{where}: query_config"))
    priors = {
        "input_gate_bias_prior": _scalar(weights, "query_model.ret_cell.input_gate_bias_prior",
                                         query.get("input_gate_bias_prior", 0.0)),
        "forget_gate_bias_prior": _scalar(weights, "query_model.ret_cell.forget_gate_bias_prior",
                                          query.get("forget_gate_bias_prior", 0.0)),
    }
    document_priors: dict[str, float | None] = {}
    if not share:
        for name in ("input_gate_bias_prior", "forget_gate_bias_prior"):
            value = _scalar(weights, f"passage_model.ret_cell.{name}", passage.get(name, 0.0))
            document_priors[f"document_{name}"] = value if value != priors[name] else None
    try:
        return ReT2Config(
            backbone_config=backbone,
            backbone_name_or_path=backbone_name,
            text_layers=text_layers,
            vision_layers=vision_layers,
            num_state_tokens=int(query.get("num_queries", 32)),
            hidden_size=hidden,
            num_attention_heads=max(1, hidden // 64),
            intermediate_size=4 * hidden,
            embedding_dim=int(query.get("late_proj_output_size", 128)),
            dropout=float(query.get("dropout_p", 0.05)),
            attention_dropout=float(query.get("attention_dropout", 0.05)),
            activation=activation,
            use_tanh=bool(query.get("use_tanh", False)),
            max_text_length=min(77, int(backbone.text_config.max_position_embeddings)),
            late_interaction=not bool(query.get("use_pooler_features", False)),
            share_query_passage_models=share,
            **priors,
            **document_priors,
        )
    except ConfigError as exc:
        raise ConversionError(f"{where}: {exc}") from exc


def _tower_prefix(weights: Mapping[str, torch.Tensor], side: str, tower: str) -> str:
    """``S.text_model.text_model.`` for a transformers 4.x save, ``S.text_model.`` for a 5.x one."""
    nested = f"{side}.{tower}.{tower}."
    return nested if any(k.startswith(nested) for k in weights) else f"{side}.{tower}."


def map_weights(weights: Mapping[str, torch.Tensor], config: Any, where: str = "checkpoint",
                model_type: str = RELEASED_MODEL_TYPE) -> dict[str, torch.Tensor]:
    """Rename a released checkpoint's tensors onto :class:`~retriever.ReT2Model`'s; check keys and shapes.

    Raises one :class:`ConversionError` listing the unmapped keys (in the checkpoint, not
    in the model), the missing ones (in the model, not in the checkpoint) and the shape
    mismatches, with the config's model type.
    """
    from .modeling_ret2 import ReT2Model

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ReT2Model(config).state_dict().items()}
    keep = {"text_model": max(config.text_layers) + 1, "vision_model": max(config.vision_layers) + 1}
    prefixes = {tower: _tower_prefix(weights, "query_model", tower) for tower in keep}
    passage_prefixes = {tower: _tower_prefix(weights, "passage_model", tower) for tower in keep}
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in weights.items():
        target = _target_key(key, tensor, weights, config, prefixes, passage_prefixes, keep)
        if target is None:
            continue
        if target == "":
            unmapped.append(key)
            continue
        out[target] = tensor
    missing = sorted(set(expected) - set(out))
    unmapped += sorted(k for k in out if k not in expected)
    shapes = [f"{k}: checkpoint {tuple(v.shape)}, model {expected[k]}" for k, v in sorted(out.items())
              if k in expected and tuple(v.shape) != expected[k]]
    if unmapped or missing or shapes:
        parts = []
        if unmapped:
            parts.append(f"unmapped keys ({len(unmapped)}): {', '.join(sorted(unmapped)[:20])}")
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:10])}")
        raise ConversionError(f"{where} (model_type {model_type!r}) does not map onto a ReT-2 model: "
                              + " | ".join(parts))
    return {k: out[k].contiguous() for k in expected}


def _target_key(key: str, tensor: torch.Tensor, weights: Mapping[str, torch.Tensor], config: Any,
                prefixes: Mapping[str, str], passage_prefixes: Mapping[str, str], keep: Mapping[str, int]) -> str | None:
    """Our name for ``key``; ``None``: dropped on purpose; ``""``: cannot be mapped."""
    for tower, prefix in prefixes.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            block = _BLOCK.match(rest)
            if rest.endswith("position_ids") or (block and int(block.group(1)) >= keep[tower]):
                return None  # a buffer we recompute, or a block past the deepest tap
            return f"{tower}.{rest}"
    for tower, prefix in passage_prefixes.items():
        # The passage side shares the query side's towers (tie_backbones); a copy is only accepted if identical.
        if key.startswith(prefix):
            twin = weights.get(prefixes[tower] + key[len(prefix):])
            return None if twin is not None and torch.equal(twin, tensor) else ""
    for side, ours in _SIDES.items():
        if not key.startswith(side + "."):
            continue
        rest = key[len(side) + 1:]
        if ours and config.share_query_passage_models:
            return ""  # a passage cell in a checkpoint that says both sides share one
        if _DROPPED_CELL_KEYS.match(rest):
            return None
        if rest.startswith(_CELL_PARTS):
            return ours + rest
    return ""


# ----------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------


def _readme_base_model(directory: Path) -> str | None:
    """``base_model`` from a model card's YAML front matter, if any."""
    readme = directory / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    match = re.search(r"^base_model:\s*(?:\n\s*-\s*)?['\"]?([^\s'\"]+)", front, flags=re.MULTILINE)
    return match.group(1) if match else None


def _has_processor(directory: Path) -> bool:
    return (directory / "preprocessor_config.json").is_file() and any(
        (directory / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json"))


def base_model_id(directory: Path, released: Mapping[str, Any], source_name: str | None) -> str | None:
    """Where the towers came from: the sub-config's ``_name_or_path``, the model card, or the known table."""
    name = (released.get("query_config", {}).get("text_config", {}) or {}).get("_name_or_path") or None
    if name and not Path(name).is_absolute():
        return name
    known = RELEASED_CHECKPOINTS.get(source_name or "", {}).get("base_model")
    return _readme_base_model(directory) or known


def load_processor(directory: Path, released: Mapping[str, Any], processor: str | os.PathLike | None,
                   source_name: str | None, max_text_length: int) -> tuple[Any, str]:
    """The :class:`~retriever.ReT2Processor` for a converted checkpoint and where it came from.

    ``processor``: a local processor directory (wins); else the checkpoint's own files,
    else the towers' base model (which offline must already be cached). A failure says
    to pass ``--processor``.
    """
    from transformers import AutoImageProcessor, AutoTokenizer

    from ret2vqa.hub import ModelUnavailableError, resolve_model

    from .processing_ret2 import ReT2Processor

    hint = ("pass --processor DIR, a local directory holding the towers' CLIP processor (tokenizer and image "
            "processor, e.g. a copy of openai/clip-vit-large-patch14)")
    if processor is not None:
        source = Path(processor).expanduser()
        if not source.is_dir():
            raise MissingFileError(source, "processor directory (--processor)")
        label = str(source)
    elif _has_processor(directory):
        source, label = directory, str(directory)
    else:
        base = base_model_id(directory, released, source_name)
        if base is None:
            raise ConversionError(f"{directory}: the checkpoint names no base model for its processor; {hint}")
        try:
            source, label = Path(resolve_model(base)), base
        except ModelUnavailableError as exc:
            raise ConversionError(f"cannot load the processor of the base model {base!r} "
                                  f"({str(exc).splitlines()[0]}); {hint}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        image_processor = AutoImageProcessor.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{source}: not a usable CLIP processor ({type(exc).__name__}: {exc}); {hint}") from exc
    return ReT2Processor(tokenizer, image_processor, "clip", max_text_length), label


# ----------------------------------------------------------------------------------------
# Converting
# ----------------------------------------------------------------------------------------


def convert_checkpoint(source: str | os.PathLike, output: str | os.PathLike, processor: str | os.PathLike | None = None,
                       revision: str | None = None, source_name: str | None = None) -> Path:
    """Convert the released checkpoint ``source`` (hub id or directory) into ``output``; return ``output``.

    ``output`` must not exist yet (or be an empty directory). Everything is read and
    checked first, written to a temporary sibling directory, then renamed into place.
    """
    from safetensors.torch import save_file

    from ret2vqa.hub import resolve_model

    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists; choose a new output directory (or remove it)", "OUT")
    name = str(source)
    directory = Path(resolve_model(name, revision, config_field="SRC"))
    source_name = source_name or (name if not Path(name).expanduser().is_dir() else None)
    released = read_released_config(directory)
    weights = read_weights(directory)
    base = base_model_id(directory, released, source_name)
    config = build_config(released, weights, base or str(processor or ""), where=str(directory / "config.json"))
    state = map_weights(weights, config, where=str(directory), model_type=str(released.get("model_type")))
    ret2_processor, processor_source = load_processor(directory, released, processor, source_name,
                                                      config.max_text_length)
    config.architectures = ["ReT2Model"]

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        save_file(state, str(tmp / SAFE_WEIGHTS), metadata={"format": "pt"})
        config.save_pretrained(tmp)
        ret2_processor.save_pretrained(tmp)
        record = {"source": name, "source_dir": str(directory), "processor": processor_source,
                  "files": sorted(p.name for p in weight_files(directory)),
                  "late_interaction": config.late_interaction,
                  "share_query_passage_models": config.share_query_passage_models}
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            output.rmdir()  # empty (checked above)
        os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("converted %s into %s", name, output)
    return output


def _source_key(directory: Path) -> str:
    """A key for a released checkpoint's content: its config and its weight files (by hub blob or size+mtime)."""
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for path in sorted(directory.glob("*.safetensors*")):
        digest.update(path.name.encode())
        if path.is_symlink():
            digest.update(Path(os.readlink(path)).name.encode())
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def converted_checkpoint(directory: str | os.PathLike, source_name: str | None = None,
                         processor: str | os.PathLike | None = None) -> Path:
    """The converted form of the released checkpoint in ``directory``, converting it once and caching it.

    The cache is ``$RET2VQA_CACHE/converted/<key>`` (default ``~/.cache/ret2vqa``), keyed by
    the checkpoint's config and weight files, so a new revision converts again.
    """
    from ret2vqa.hub import ret2vqa_cache_dir

    directory = Path(directory)
    target = Path(ret2vqa_cache_dir()) / "converted" / _source_key(directory)
    if (target / "config.json").is_file():
        return target
    logger.warning("converting the released ReT checkpoint %s into %s (once)", source_name or directory, target)
    try:
        return convert_checkpoint(directory, target, processor=processor, source_name=source_name)
    except (OSError, ConfigError):
        # Another process (e.g. a multi-GPU indexing run) converted it first: its rename won.
        if (target / "config.json").is_file():
            return target
        raise
