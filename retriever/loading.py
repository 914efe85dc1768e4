"""Which encoder embeds queries and passages, as configuration, and loading it.

The ``encoder:`` section of a pipeline YAML is an :class:`EncoderConfig`;
:func:`load_encoder` turns it into a :class:`~retriever.ReT2Encoder` (a ReT-2
checkpoint) or a :class:`~retriever.baseline.DualEncoder` (a plain CLIP / SigLIP
checkpoint used zero-shot). Both have the same ``encode*`` interface.

A collection records how to load its encoder again (:meth:`EncoderConfig.loader_spec`),
so ``ret2vqa search`` and ``ask`` can embed queries with the very encoder that embedded
the passages without being told which one it was (:meth:`EncoderConfig.from_loader_spec`).

Tiny random models (``tiny-random/<family>``, see :mod:`ret2vqa.hub`) are built in
code by the composition root (:mod:`rag.components`), not loaded from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

from ret2vqa.config import ConfigError, at_least
from ret2vqa.hub import TINY_PREFIX

#: The values of ``encoder.compile``.
COMPILE_MODES = (False, True, "reduce-overhead", "max-autotune")


@dataclass
class EncoderConfig:
    """The encoder that embeds passages (and queries against them).

    ``name_or_path``: a hub id or local checkpoint directory; ``tiny-random/clip``
    (``siglip``, ``siglip2``) builds a tiny random encoder for tests and offline runs
    (its ``revision`` is the seed, e.g. ``seed1``; its vectors mean nothing). Empty:
    use the encoder the collection was built with (``search``, ``ask``, ``eval``);
    ``index build`` needs one. ``type``: ``ret2`` (a ReT-2 checkpoint) or
    ``dual_encoder`` (a plain CLIP / SigLIP checkpoint used zero-shot, the classic
    baseline, e.g. ``openai/clip-vit-base-patch32``). ``batch_size``: items per forward
    pass. ``device``: ``cpu``, ``cuda``, ``cuda:N``, or null for the first GPU if any.
    ``dtype``: ``auto`` is bfloat16 on a GPU and float32 on the CPU
    (:mod:`ret2vqa.devices`). ``image_workers``: threads decoding images.
    ``compile``: run the ReT-2 model through ``torch.compile`` (``false``: eager;
    ``true``: fused kernels; ``reduce-overhead``: also CUDA graphs, which removes the
    launch cost of the cell's small kernels on a GPU; ``max-autotune``). Compiling
    costs seconds to a minute on the first batch of each shape and pays on long
    indexing runs on a GPU; ``bench/encoder.py --compile`` measures it.
    """

    name_or_path: str = ""
    type: Literal["ret2", "dual_encoder"] = "ret2"
    revision: Optional[str] = None
    batch_size: int = 64
    device: Optional[str] = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    image_workers: int = 4
    compile: Literal[False, True, "reduce-overhead", "max-autotune"] = False

    def __post_init__(self) -> None:
        if self.name_or_path == "tiny":
            raise ConfigError(f"'tiny' is spelled '{TINY_PREFIX}clip' (or siglip, siglip2), with the seed as "
                              f"revision (e.g. seed0)", "name_or_path")
        at_least(self, 1, "batch_size", "image_workers")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ConfigError(f"must be one of {list(COMPILE_MODES)}, got {self.compile!r}", "compile")
        if self.compile is not False and self.type == "dual_encoder":
            raise ConfigError("applies to ReT-2 encoders (type: ret2); the dual encoder runs eagerly", "compile")

    @property
    def given(self) -> bool:
        """Whether the config names an encoder (else the collection's own is used)."""
        return bool(self.name_or_path)

    def loader_spec(self) -> dict[str, Any]:
        """How to load this encoder again, as recorded in a collection's metadata."""
        return {"type": self.type, "name_or_path": self.name_or_path, "revision": self.revision}

    @classmethod
    def from_loader_spec(cls, spec: Mapping[str, Any], base: "EncoderConfig | None" = None) -> "EncoderConfig":
        """The encoder a collection was built with; ``base`` supplies run-time choices (device, dtype, batch size).

        Reads collections written by earlier versions too (``{"tiny": true, "tiny_backbone", "tiny_seed"}``).
        """
        base = base or cls()
        if spec.get("tiny"):  # written before tiny models were named tiny-random/<family>
            name, revision = f"{TINY_PREFIX}{spec.get('tiny_backbone', 'clip')}", f"seed{int(spec.get('tiny_seed', 0))}"
        else:
            name, revision = spec["name_or_path"], spec.get("revision")
        return cls(name_or_path=name, type=spec.get("type", "ret2"), revision=revision, batch_size=base.batch_size,
                   device=base.device, dtype=base.dtype, image_workers=base.image_workers,
                   compile=base.compile if spec.get("type", "ret2") == "ret2" else False)


def load_encoder(config: EncoderConfig, device: Any = None) -> Any:
    """The encoder of ``config`` from its checkpoint (``device`` overrides the config's).

    A :class:`~retriever.ReT2Encoder`, or with ``type: dual_encoder`` the zero-shot
    :class:`~retriever.baseline.DualEncoder`.
    """
    if not config.given:
        raise ConfigError("required here (a ReT-2 checkpoint hub id or local directory, or "
                          f"{TINY_PREFIX}clip for the tiny random test encoder)", "encoder.name_or_path")
    kwargs = dict(revision=config.revision, device=device if device is not None else config.device,
                  dtype=config.dtype, image_workers=config.image_workers)
    if config.type == "dual_encoder":
        from .baseline import DualEncoder

        return DualEncoder.from_pretrained(config.name_or_path, **kwargs)
    from .encoder import ReT2Encoder

    return apply_run_options(ReT2Encoder.from_pretrained(config.name_or_path, **kwargs), config)


def apply_run_options(encoder: Any, config: EncoderConfig) -> Any:
    """The run-time choices of ``config`` that apply to a built encoder (compilation); returns it."""
    if config.compile is not False:
        encoder.compile(config.compile)
    return encoder
