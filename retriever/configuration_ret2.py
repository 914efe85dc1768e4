"""ReT-2 configuration.

What the paper fixes (shared encoder, three tapped layers per tower, a recurrent
Transformer cell with LSTM-style gates, one normalised vector per item) is structure;
every value the paper does not pin down is a field here, with the defaults explained in
``docs/retriever.md`` (32 state tokens, heads = width / 64, MLP 4x, dropout 0.05,
mean pooling of the final state then a linear projection) and one deliberate change:
the cell's width follows the backbone (see :func:`default_cell_width`) instead of being
ReT-1's fixed 1024, so that on CLIP ViT-B/32 the cell stays a small fraction of the
towers' cost (``bench/encoder.py``; docs/retriever.md, "Cell width").
Parameter names in the model follow ReT-1's code (``ret_cell.*``, ``text_adapter.N``,
``vision_adapter.N``) so that mapping released checkpoints stays small.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from ret2vqa.errors import ConfigError

from .backbones import backbone_spec

DEFAULT_QUERY_INSTRUCTION = "Retrieve documents that provide an answer to the question alongside the image:"


#: ReT-1's cell width and output size: the caps of the backbone-relative defaults.
MAX_DEFAULT_HIDDEN_SIZE = 1024
MAX_DEFAULT_EMBEDDING_DIM = 768


def default_cell_width(text_width: int, vision_width: int) -> int:
    """The default cell width: the narrower tower's width, at most ReT-1's 1024.

    Why: a cell wider than the towers it summarises costs more than they do. ReT-1's
    1024 was set for ViT-L and larger backbones; on ViT-B/32 (512-wide text tower) a
    1024-wide cell adds ~45% to the towers' forward, a 512-wide one ~10%. CLIP B/32 ->
    512, CLIP L/14 -> 768, SigLIP base -> 768, SigLIP so400m / OpenCLIP H, G -> 1024.
    """
    return min(MAX_DEFAULT_HIDDEN_SIZE, int(text_width), int(vision_width))


def default_layers(num_layers: int) -> list[int]:
    """First, middle and last block of a tower with ``num_layers`` blocks."""
    return [0, num_layers // 2, num_layers - 1]


class ReT2Config(PretrainedConfig):
    r"""Configuration of a :class:`~retriever.ReT2Model`.

    Args:
        backbone_config: configuration of the vision-language backbone (``CLIPConfig``,
            ``SiglipConfig`` or ``Siglip2Config``, or its dict form).
        backbone_name_or_path: where the backbone (and its tokenizer / image processor)
            originally came from; recorded for provenance.
        text_layers / vision_layers: indices of the tapped blocks in each tower (0-based,
            negative indices count from the end). Default: first, middle, last. Both
            lists must have the same length: the cell takes one step per pair.
        num_state_tokens: number of learnable state tokens ``k``.
        hidden_size: width ``d`` of the recurrent cell. Default: the backbone's narrower
            tower width, at most 1024 (:func:`default_cell_width`); 512 on CLIP ViT-B/32.
        num_attention_heads: heads of the cell's attentions (default ``hidden_size // 64``).
        intermediate_size: MLP width (default ``4 * hidden_size``).
        embedding_dim: size of the output vector. Default ``min(768, hidden_size)``: a
            projection wider than the cell adds storage, not information.
        dropout / attention_dropout: dropout in the MLP / attentions.
        activation: ``"gelu"`` or ``"relu"`` for the cell MLP.
        input_gate_bias_prior / forget_gate_bias_prior: constants added inside the
            input / forget gate sigmoids (ReT-1 uses 0; a positive forget prior makes
            the cell keep its state early in training).
        state_init_std: std of the normal init of the initial state ``H_0``.
        use_tanh: apply ``tanh`` to the state and candidates before gating (ReT-1 option).
        freeze_backbone: keep the backbone fixed during training.
        prune_backbone: drop the backbone blocks after the deepest tapped layer (they
            cannot influence the output, so this saves memory and time).
        max_text_length: token budget for texts (default: the text tower's positions).
        query_instruction: prepended to query texts as ``"{instruction} {question}"``.
        late_interaction: keep every state token: ``late_proj`` is applied per token and
            each token is L2-normalised, giving ``(num_state_tokens, embedding_dim)`` per
            item, compared by MaxSim (ReT-1's default output, ``use_pooler_features:
            false``). ``False`` (the default): the pooled head, ``late_proj(mean(H))``,
            one normalised vector per item (ReT-1's ``use_pooler_features: true``).
        share_query_passage_models: one cell, adapter set and ``late_proj`` for both
            queries and documents (the default for our own training). ``False``: a
            separate document-side cell, adapters and ``late_proj`` (``document_*``
            modules) over the same towers, as ReT-1's released checkpoints have.
        document_input_gate_bias_prior / document_forget_gate_bias_prior: the document
            cell's gate priors when they differ from the query cell's (``None``: same).
    """

    model_type = "ret2"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | None = None,
        backbone_name_or_path: str | None = None,
        text_layers: list[int] | None = None,
        vision_layers: list[int] | None = None,
        num_state_tokens: int = 32,
        hidden_size: int | None = None,
        num_attention_heads: int | None = None,
        intermediate_size: int | None = None,
        embedding_dim: int | None = None,
        dropout: float = 0.05,
        attention_dropout: float = 0.05,
        activation: str = "gelu",
        input_gate_bias_prior: float = 0.0,
        forget_gate_bias_prior: float = 0.0,
        state_init_std: float = 0.2,
        use_tanh: bool = False,
        freeze_backbone: bool = False,
        prune_backbone: bool = True,
        max_text_length: int | None = None,
        query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        late_interaction: bool = False,
        share_query_passage_models: bool = True,
        document_input_gate_bias_prior: float | None = None,
        document_forget_gate_bias_prior: float | None = None,
        **kwargs: Any,
    ):
        if isinstance(backbone_config, dict):
            backbone_config = dict(backbone_config)
            model_type = backbone_config.pop("model_type", None)
            if model_type is None:
                raise ConfigError("ReT2Config.backbone_config: the dict form needs a 'model_type' (e.g. 'clip')")
            backbone_config = AutoConfig.for_model(model_type, **backbone_config)
        self.backbone_config = backbone_config
        self.backbone_name_or_path = backbone_name_or_path
        self.num_state_tokens = num_state_tokens
        # Sizes left at None are resolved from the backbone in _validate (a config without
        # a backbone keeps them None: it cannot build a model, and keeping them unresolved
        # means a resolved value is never mistaken for a class default when serialising).
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.input_gate_bias_prior = input_gate_bias_prior
        self.forget_gate_bias_prior = forget_gate_bias_prior
        self.state_init_std = state_init_std
        self.use_tanh = use_tanh
        self.freeze_backbone = freeze_backbone
        self.prune_backbone = prune_backbone
        self.query_instruction = query_instruction
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.text_layers = list(text_layers) if text_layers is not None else None
        self.vision_layers = list(vision_layers) if vision_layers is not None else None
        self.max_text_length = max_text_length
        self.late_interaction = bool(late_interaction)
        self.share_query_passage_models = bool(share_query_passage_models)
        self.document_input_gate_bias_prior = document_input_gate_bias_prior
        self.document_forget_gate_bias_prior = document_forget_gate_bias_prior
        super().__init__(**kwargs)
        self._validate()

    def _validate(self) -> None:
        if self.activation not in ("gelu", "relu"):
            raise ConfigError(f"ReT2Config.activation must be 'gelu' or 'relu', got {self.activation!r}")
        spec = backbone_spec(self.backbone_config) if self.backbone_config is not None else None
        if self.hidden_size is None and spec is not None:
            self.hidden_size = default_cell_width(
                spec.text_width(self.backbone_config), spec.vision_width(self.backbone_config)
            )
        if self.hidden_size is None:
            return
        self.num_attention_heads = self.num_attention_heads or max(1, self.hidden_size // 64)
        self.intermediate_size = self.intermediate_size or 4 * self.hidden_size
        if self.embedding_dim is None:
            self.embedding_dim = min(MAX_DEFAULT_EMBEDDING_DIM, self.hidden_size)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"ReT2Config.hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        for name in ("num_state_tokens", "hidden_size", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ReT2Config.{name} must be positive, got {getattr(self, name)}")
        if spec is None:
            return
        n_text = spec.num_text_layers(self.backbone_config)
        n_vision = spec.num_vision_layers(self.backbone_config)
        if self.text_layers is None:
            self.text_layers = default_layers(n_text)
        if self.vision_layers is None:
            self.vision_layers = default_layers(n_vision)
        self.text_layers = _normalise_layers("text_layers", self.text_layers, n_text, f"text tower of '{spec.name}'")
        self.vision_layers = _normalise_layers(
            "vision_layers", self.vision_layers, n_vision, f"vision tower of '{spec.name}'"
        )
        if len(self.text_layers) != len(self.vision_layers):
            raise ConfigError(
                f"ReT2Config: text_layers {self.text_layers} and vision_layers {self.vision_layers} must have the "
                "same length (the cell takes one step per text/vision layer pair)"
            )
        if self.max_text_length is None:
            self.max_text_length = spec.max_text_positions(self.backbone_config)

    @property
    def num_output_vectors(self) -> int | None:
        """Vectors per item of a late-interaction model (``num_state_tokens``); ``None`` for one vector."""
        return int(self.num_state_tokens) if self.late_interaction else None

    @property
    def num_steps(self) -> int:
        """Number of recurrent steps (tapped layer pairs)."""
        return len(self.text_layers or [])


def _normalise_layers(field: str, layers: list[int], num_layers: int, what: str) -> list[int]:
    out = []
    for idx in layers:
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise ConfigError(f"ReT2Config.{field}: layer indices must be integers, got {idx!r}")
        real = idx + num_layers if idx < 0 else idx
        if not 0 <= real < num_layers:
            raise ConfigError(
                f"ReT2Config.{field}: layer {idx} does not exist; the {what} has {num_layers} blocks "
                f"(valid indices 0..{num_layers - 1}, or -{num_layers}..-1)"
            )
        out.append(real)
    if not out:
        raise ConfigError(f"ReT2Config.{field}: at least one layer must be tapped")
    return out
