"""ReT-2: a recurrent Transformer cell over a few layers of a vision-language backbone.

Per item, the text tower and the vision tower of a dual encoder (CLIP / SigLIP) are
run once; the hidden states of a few tapped blocks (early, middle, late) are mapped
by per-layer adapters to the cell width. A single cell, shared across steps, then
updates ``k`` state tokens once per tapped layer pair::

    X  = H + P ;  Xn = LN(X)
    R  = X + SelfAttn(Xn)
    T  = CrossAttn_text(Xn, LN(adapter_t[l](text_tokens_l)))      (key padding mask)
    V  = CrossAttn_image(Xn, LN(adapter_v[l](image_tokens_l)))
    i_t = sigmoid(W_it T + b_i) * text_mask
    i_v = sigmoid(W_iv V + b_i) * image_mask
    f   = sigmoid(text_mask * W_ft T + image_mask * W_fv V + b_f)
    H'  = f * R + i_t * T + i_v * V
    H   = H' + MLP(LN(H'))

The final state is mean-pooled, projected to ``embedding_dim`` and L2-normalised:
one vector per item, compared by dot product (the pooled head, the default). With
``late_interaction`` every state token is projected and normalised instead, giving
``(num_state_tokens, embedding_dim)`` per item, compared by MaxSim (ReT-1's released
checkpoints). With ``share_query_passage_models: false`` documents go through their
own cell, adapters and projection (``document_*``) over the same towers.

A missing modality is masked *and skipped*: towers and cross-attentions run only on
the items that have that modality, and the masked gates are exactly zero, so the
missing side cannot influence the embedding and text-only passages cost no vision
compute. Parameter names follow ReT-1 (``ret_cell.*``, ``text_adapter.N``,
``vision_adapter.N``, ``late_proj``).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

try:  # transformers >= 5: init helpers that leave loaded weights alone
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init

from .backbones import backbone_spec, prune_tower
from .configuration_ret2 import ReT2Config

#: The two sides of a retriever: what ``ReT2Model.forward(side=...)`` accepts.
SIDES = ("query", "document")
#: ``forward(side=PAIRED_SIDES)``: the first half of the batch through the query side, the second the document side.
PAIRED_SIDES = "query+document"


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed sinusoidal position table ``P`` added to the state at every step."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, num_positions, dim)
    table[..., 0::2] = torch.sin(position * div_term)
    table[..., 1::2] = torch.cos(position * div_term[: dim // 2])
    return table


#: Where the tapped blocks' hooks put their outputs during one tower forward (None: not tapping).
_TAPPED_OUTPUTS: ContextVar[dict[int, torch.Tensor] | None] = ContextVar("ret2_tapped_outputs", default=None)


class _CompiledTap:
    """The store of the forward being traced by ``torch.compile``, which cannot trace a
    ``ContextVar``: a plain attribute then, set and cleared inside the traced forward."""

    store: dict[int, torch.Tensor] | None = None


def _record_tapped_output(layer: int, module: nn.Module, args: Any, output: Any) -> None:
    """Forward hook on tapped block ``layer``: record its output for the forward that is tapping."""
    # The compiled forward's store first: a graph break inside the tower (SigLIP 2's shape
    # checks) runs some blocks eagerly, and they must record into the same store.
    store = _CompiledTap.store if _CompiledTap.store is not None else _TAPPED_OUTPUTS.get()
    if store is not None:
        store[layer] = output[0] if isinstance(output, tuple) else output


@dataclass
class ModalityTokens:
    """One modality's adapted tokens at one step, for the items that have that modality.

    ``rows`` indexes those items in the batch (``None``: every item); ``key_padding_mask``
    is ``True`` at padded positions. Which items have a modality is decided once per
    batch, on the host, from plain Python data (:class:`Presence`), never by reading a
    tensor back inside the forward.
    """

    tokens: torch.Tensor
    key_padding_mask: torch.Tensor | None
    rows: torch.Tensor | None


#: How many items of a batch have a modality: every one, some, or none.
ALL, SOME, NONE = "all", "some", "none"
PRESENCE_VALUES = (ALL, SOME, NONE)


def presence_of(flags: "list[bool] | tuple[bool, ...]") -> str:
    """``"all"``, ``"some"`` or ``"none"`` for one modality's per-item flags (plain Python)."""
    count = sum(1 for f in flags if f)
    return ALL if count == len(flags) else NONE if count == 0 else SOME


@dataclass
class Presence:
    """Which items have text and which an image, resolved once per batch on the host.

    ``text`` / ``image`` are ``"all"``, ``"some"`` or ``"none"``; ``text_rows`` /
    ``image_rows`` index the items that have the modality when only some do.
    Everything the forward branches on is plain Python data, so it never waits for
    the device (no ``.item()``, ``.all()`` or ``nonzero``) and ``torch.compile``
    captures it in one graph per presence pattern.
    """

    text: str
    image: str
    text_rows: torch.Tensor | None = None
    image_rows: torch.Tensor | None = None

    @classmethod
    def from_masks(cls, text_mask: torch.Tensor, image_mask: torch.Tensor) -> "Presence":
        """The fallback for callers that give only 0/1 mask tensors: one host read of both masks."""
        both = torch.stack([text_mask.detach(), image_mask.detach()]).to("cpu") > 0
        text_flags, image_flags = both.tolist()
        if not all(t or i for t, i in zip(text_flags, image_flags)):
            raise ValueError("every item needs text, an image, or both (found one with neither)")
        device = text_mask.device
        return cls(presence_of(text_flags), presence_of(image_flags),
                   _rows_tensor(text_flags, device), _rows_tensor(image_flags, device))


def _rows_tensor(flags: list[bool], device: torch.device) -> torch.Tensor | None:
    """The indices of the flagged items when only some are flagged (else ``None``)."""
    if presence_of(flags) != SOME:
        return None
    return torch.tensor([i for i, f in enumerate(flags) if f], dtype=torch.long, device=device)


class ReT2Cell(nn.Module):
    """The recurrent cell, shared across steps (one step per tapped layer pair)."""

    def __init__(self, config: ReT2Config):
        super().__init__()
        d, heads = config.hidden_size, config.num_attention_heads
        self.num_state_tokens = config.num_state_tokens
        self.query_hidden_states = nn.Parameter(torch.zeros(1, config.num_state_tokens, d))
        self.register_buffer("query_state_ids", sinusoidal_table(config.num_state_tokens, d), persistent=False)

        self.sa = nn.MultiheadAttention(d, heads, dropout=config.attention_dropout, batch_first=True)
        self.text_xa = nn.MultiheadAttention(d, heads, dropout=config.attention_dropout, batch_first=True, bias=False)
        self.vision_xa = nn.MultiheadAttention(
            d, heads, dropout=config.attention_dropout, batch_first=True, bias=False
        )
        act = nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(
            nn.Linear(d, config.intermediate_size),
            nn.Dropout(config.dropout),
            act,
            nn.Linear(config.intermediate_size, d),
            nn.Dropout(config.dropout),
        )
        self.text_input_gate_w = nn.Linear(d, d)
        self.vision_input_gate_w = nn.Linear(d, d)
        self.text_forget_gate_w = nn.Linear(d, d)
        self.vision_forget_gate_w = nn.Linear(d, d)

        self.xa_ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.text_ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.vision_ln = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp_ln = nn.LayerNorm(d, eps=config.layer_norm_eps)

        self.input_gate_bias_prior = float(config.input_gate_bias_prior)
        self.forget_gate_bias_prior = float(config.forget_gate_bias_prior)
        self.state_act = nn.Tanh() if config.use_tanh else nn.Identity()

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.query_hidden_states.expand(batch_size, -1, -1)

    def _cross_queries(self, attn: nn.MultiheadAttention, xn: torch.Tensor) -> torch.Tensor:
        """Query projection of a cross-attention, split into heads: (batch, heads, k, head_dim)."""
        d = xn.shape[-1]
        q = F.linear(xn, attn.in_proj_weight[:d])
        return q.view(*xn.shape[:2], attn.num_heads, attn.head_dim).transpose(1, 2)

    def _cross(
        self, attn: nn.MultiheadAttention, norm: nn.LayerNorm, queries: torch.Tensor, kv: ModalityTokens | None
    ) -> torch.Tensor | None:
        """Cross-attention of the state to one modality, for the rows that have it.

        The same computation as ``attn(Xn, keys, keys)`` (its weights, scaling and
        dropout), written on ``scaled_dot_product_attention`` so that projected queries
        can be shared across rows and keys/values come out of one matmul in the layout
        the kernel wants. Returns ``None`` when no item has the modality.
        """
        if kv is None:
            return None
        keys = norm(kv.tokens)
        batch, n, d = keys.shape
        k, v = (
            F.linear(keys, attn.in_proj_weight[d:])
            .view(batch, n, 2, attn.num_heads, attn.head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        q = queries if kv.rows is None or queries.shape[0] == 1 else queries.index_select(0, kv.rows)
        q = q.expand(batch, -1, -1, -1)
        mask = None if kv.key_padding_mask is None else ~kv.key_padding_mask[:, None, None, :]
        dropout = attn.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return attn.out_proj(attended.transpose(1, 2).reshape(batch, -1, d))

    @staticmethod
    def _scatter(values: torch.Tensor | None, kv: ModalityTokens | None, batch: int) -> torch.Tensor | None:
        """Place the rows that have a modality back into the full batch (zeros elsewhere).

        The zeros take the dtype of ``values``: under autocast the attention output is
        bfloat16 while the residual stream stays float32, and ``index_copy`` needs both
        sides in one dtype.
        """
        if values is None or kv.rows is None:
            return values
        return values.new_zeros((batch, *values.shape[1:])).index_copy(0, kv.rows, values)

    def forward(
        self,
        state: torch.Tensor,
        text: ModalityTokens | None,
        vision: ModalityTokens | None,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        shared_state: bool = False,
    ) -> torch.Tensor:
        """One step. ``shared_state``: every row of ``state`` is the same (the initial
        state), so the state-only part (self-attention, query projections) is computed
        once and broadcast.

        A modality whose tokens are ``None`` is absent from every item and skipped. A
        mask (one 0/1 per item) switches that modality's gates off where it is 0;
        ``None`` means every item that reaches the cell with tokens has it (no multiply).
        Nothing here reads a tensor back to the host.
        """
        batch = state.shape[0]
        if shared_state:
            state = state[:1]
        x = state + self.query_state_ids.to(state.dtype)
        xn = self.xa_ln(x)
        residual = x + self.sa(xn, xn, xn, need_weights=False)[0]
        # Query projections depend on the state only: with a shared state they are
        # computed once and broadcast over the batch.
        text_queries = self._cross_queries(self.text_xa, xn)
        vision_queries = self._cross_queries(self.vision_xa, xn)
        if shared_state:
            residual = residual.expand(batch, -1, -1)

        t = self._scatter(self._cross(self.text_xa, self.text_ln, text_queries, text), text, batch)
        v = self._scatter(self._cross(self.vision_xa, self.vision_ln, vision_queries, vision), vision, batch)

        # Gates, one modality at a time. A modality no item has contributes exactly
        # nothing (its gates and forget term are multiplied by 0), so it is skipped; a
        # modality every item has needs no mask multiply. Both shortcuts are exact, and
        # they keep text-only documents from paying for image gates. The sigmoid priors
        # ride on the linear biases, and the in-place steps only touch fresh outputs whose
        # values no backward needs (a Linear's output, a product, a sum), so they are
        # autograd-safe: fewer batch-sized temporaries, which is measurable on CPU.
        # Under autocast the gate terms come out in bfloat16 while the residual stream is
        # float32: the steps that meet the residual are then done out of place, so the
        # state keeps the wider dtype (an in-place add would round it to bfloat16).
        new_state: torch.Tensor | None = None
        forget_logits: torch.Tensor | None = None
        for candidate, mask, input_gate_w, forget_gate_w in (
            (t, text_mask, self.text_input_gate_w, self.text_forget_gate_w),
            (v, image_mask, self.vision_input_gate_w, self.vision_forget_gate_w),
        ):
            if candidate is None:
                continue
            input_gate = F.linear(candidate, input_gate_w.weight, input_gate_w.bias + self.input_gate_bias_prior)
            input_gate = input_gate.sigmoid_()
            forget_term = forget_gate_w(candidate)
            if mask is not None:
                row_mask = mask.to(input_gate.dtype)[:, None, None]
                input_gate, forget_term = input_gate * row_mask, forget_term * row_mask
            forget_logits = forget_term if forget_logits is None else _add(forget_logits, forget_term)
            update = self.state_act(candidate) * input_gate
            new_state = update if new_state is None else _add(new_state, update)
        if forget_logits is None or new_state is None:
            raise ValueError("ReT2Cell: every item needs text, an image, or both (this step got neither)")
        forget_gate = forget_logits.add_(self.forget_gate_bias_prior).sigmoid_()
        kept = self.state_act(residual)
        if new_state.dtype == torch.promote_types(new_state.dtype, kept.dtype):
            new_state = new_state.addcmul_(kept, forget_gate)
        else:
            new_state = torch.addcmul(new_state, kept, forget_gate)
        return _add(self.mlp(self.mlp_ln(new_state)), new_state)


def _add(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh + other``, in place when that keeps the promoted dtype (``fresh`` is a
    temporary no backward needs); out of place when ``other`` is wider (autocast)."""
    if fresh.dtype == torch.promote_types(fresh.dtype, other.dtype):
        return fresh.add_(other)
    return fresh + other


@dataclass
class ReT2Output(ModelOutput):
    """``embeddings``: (batch, embedding_dim), or (batch, num_state_tokens, embedding_dim) for a
    late-interaction model, L2-normalised per vector. ``state``: final state tokens."""

    embeddings: torch.Tensor | None = None
    state: torch.Tensor | None = None


class ReT2PreTrainedModel(PreTrainedModel):
    config_class = ReT2Config
    base_model_prefix = "ret2"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ReT2Cell"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, ReT2Cell):
            init.normal_(module.query_hidden_states, mean=0.0, std=self.config.state_init_std)
            init.copy_(
                module.query_state_ids,
                sinusoidal_table(self.config.num_state_tokens, self.config.hidden_size),
            )
        elif isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            if module.in_proj_bias is not None:
                init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class ReT2Model(ReT2PreTrainedModel):
    """The ReT-2 encoder: backbone towers + adapters + recurrent cell + projection.

    Build a fresh model on a pretrained backbone with :meth:`from_backbone`; load a
    trained one with ``from_pretrained``. For batched encoding of raw texts/images use
    :class:`retriever.ReT2Encoder`, which pairs the model with its processor.
    """

    def __init__(self, config: ReT2Config, backbone: nn.Module | None = None):
        super().__init__(config)
        if config.backbone_config is None:
            raise ValueError("ReT2Config.backbone_config is required to build a ReT2Model")
        spec = backbone_spec(config.backbone_config)
        self.spec = spec
        if backbone is None:
            backbone = spec.build(config.backbone_config)
        self.text_model, self.vision_model = spec.towers(backbone)
        if config.prune_backbone:
            prune_tower(self.text_model, max(config.text_layers) + 1)
            prune_tower(self.vision_model, max(config.vision_layers) + 1)
        for tower, layers in ((self.text_model, config.text_layers), (self.vision_model, config.vision_layers)):
            for layer in sorted(set(layers)):
                tower.encoder.layers[layer].register_forward_hook(partial(_record_tapped_output, layer))
        d = config.hidden_size
        text_width = spec.text_width(config.backbone_config)
        vision_width = spec.vision_width(config.backbone_config)
        self.text_adapter = nn.ModuleList([nn.Linear(text_width, d) for _ in config.text_layers])
        self.vision_adapter = nn.ModuleList([nn.Linear(vision_width, d) for _ in config.vision_layers])
        self.ret_cell = ReT2Cell(config)
        self.late_proj = nn.Linear(d, config.embedding_dim, bias=False)
        if not config.share_query_passage_models:
            # The document side: its own adapters, cell and projection over the same towers.
            self.document_text_adapter = nn.ModuleList([nn.Linear(text_width, d) for _ in config.text_layers])
            self.document_vision_adapter = nn.ModuleList([nn.Linear(vision_width, d) for _ in config.vision_layers])
            self.document_ret_cell = ReT2Cell(config)
            if config.document_input_gate_bias_prior is not None:
                self.document_ret_cell.input_gate_bias_prior = float(config.document_input_gate_bias_prior)
            if config.document_forget_gate_bias_prior is not None:
                self.document_ret_cell.forget_gate_bias_prior = float(config.document_forget_gate_bias_prior)
            self.document_late_proj = nn.Linear(d, config.embedding_dim, bias=False)
        self.post_init()
        if config.freeze_backbone:
            self.freeze_backbone()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(
        cls, backbone_name_or_path: str, revision: str | None = None, **config_kwargs: Any
    ) -> "ReT2Model":
        """A new ReT-2 (random cell) on a pretrained backbone, e.g. ``openai/clip-vit-base-patch32``."""
        from ret2vqa.hub import resolve_model

        local = resolve_model(backbone_name_or_path, revision, config_field="backbone")
        backbone_config = AutoConfig.from_pretrained(local)
        spec = backbone_spec(backbone_config)
        pretrained = spec.model_cls().from_pretrained(local)
        config = ReT2Config(
            backbone_config=backbone_config, backbone_name_or_path=backbone_name_or_path, **config_kwargs
        )
        model = cls(config)
        model.load_backbone_weights(pretrained)
        return model

    def load_backbone_weights(self, backbone: nn.Module) -> None:
        """Copy pretrained tower weights into this model (pruned blocks are ignored)."""
        text, vision = self.spec.towers(backbone)
        for mine, theirs in ((self.text_model, text), (self.vision_model, vision)):
            own = mine.state_dict()
            state = {k: v for k, v in theirs.state_dict().items() if k in own}
            missing = sorted(set(own) - set(state))
            if missing:
                raise ValueError(f"backbone weights are missing parameters: {missing[:5]}")
            mine.load_state_dict(state, strict=True)

    def freeze_backbone(self) -> None:
        """Keep the towers fixed (``requires_grad=False``, eval mode during training)."""
        self.text_model.requires_grad_(False)
        self.vision_model.requires_grad_(False)
        self.config.freeze_backbone = True

    def train(self, mode: bool = True) -> "ReT2Model":
        super().train(mode)
        if self.config.freeze_backbone:
            self.text_model.eval()
            self.vision_model.eval()
        return self

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _tapped_hidden_states(tower: nn.Module, layers: list[int], **inputs: Any) -> list[torch.Tensor]:
        """Run a tower once and keep only the outputs of the tapped blocks.

        Why not ``output_hidden_states=True``: that keeps every block's output alive
        until the tower returns, while ReT-2 needs three; on CPU the extra live memory
        makes the towers measurably slower than the same towers in a plain dual encoder
        (fresh pages for every block). The tapped blocks carry a forward hook (added in
        ``__init__``) that records their output into a per-call store held in a context
        variable, so concurrent forwards in threads or tasks never see each other's
        tensors. The hook only stores references: activation checkpointing recomputes
        nothing extra.
        """
        store: dict[int, torch.Tensor] = {}
        if torch.compiler.is_compiling():  # traced once into the graph: no other forward can interleave
            _CompiledTap.store = store
            try:
                tower(**inputs)
            finally:
                _CompiledTap.store = None
        else:
            token = _TAPPED_OUTPUTS.set(store)
            try:
                tower(**inputs)
            finally:
                _TAPPED_OUTPUTS.reset(token)
        return [store[layer] for layer in layers]

    def side_modules(self, side: str) -> tuple[nn.ModuleList, nn.ModuleList, ReT2Cell, nn.Linear]:
        """``(text_adapter, vision_adapter, ret_cell, late_proj)`` of ``side`` (``"query"`` or ``"document"``).

        One shared set unless the model has a separate document side
        (``share_query_passage_models: false``).
        """
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if side == "document" and not self.config.share_query_passage_models:
            return self.document_text_adapter, self.document_vision_adapter, self.document_ret_cell, self.document_late_proj
        return self.text_adapter, self.vision_adapter, self.ret_cell, self.late_proj

    def _text_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, rows: torch.Tensor | None,
        adapters: nn.ModuleList | None = None,
    ) -> list[ModalityTokens]:
        if rows is not None:
            input_ids = input_ids.index_select(0, rows)
            attention_mask = attention_mask.index_select(0, rows) if attention_mask is not None else None
        tower_mask = attention_mask if self.spec.pass_text_attention_mask else None
        hidden = self._tapped_hidden_states(
            self.text_model, self.config.text_layers, input_ids=input_ids, attention_mask=tower_mask
        )
        key_padding = (attention_mask == 0) if attention_mask is not None else None
        adapters = self.text_adapter if adapters is None else adapters
        return [ModalityTokens(adapter(h), key_padding, rows) for adapter, h in zip(adapters, hidden)]

    def _vision_tokens(
        self, pixel_values: torch.Tensor, extra: dict[str, torch.Tensor], rows: torch.Tensor | None,
        adapters: nn.ModuleList | None = None,
    ) -> list[ModalityTokens]:
        if rows is not None:
            pixel_values = pixel_values.index_select(0, rows)
            extra = {k: v.index_select(0, rows) for k, v in extra.items()}
        hidden = self._tapped_hidden_states(
            self.vision_model, self.config.vision_layers, pixel_values=pixel_values, **extra
        )
        key_padding = None
        if self.spec.image_key_mask_input and self.spec.image_key_mask_input in extra:
            key_padding = extra[self.spec.image_key_mask_input] == 0
        adapters = self.vision_adapter if adapters is None else adapters
        return [ModalityTokens(adapter(h), key_padding, rows) for adapter, h in zip(adapters, hidden)]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        return_state: bool = False,
        side: str = "query",
        text_presence: str | None = None,
        image_presence: str | None = None,
        text_rows: torch.Tensor | None = None,
        image_rows: torch.Tensor | None = None,
        **vision_kwargs: torch.Tensor,
    ) -> ReT2Output:
        """Embed a batch. ``text_mask`` / ``image_mask`` (one 0/1 per item) switch a modality off.

        Inputs hold one row per item; rows of a masked-off modality are ignored (their
        content has no effect). ``vision_kwargs`` carries backbone-specific vision inputs
        (SigLIP 2's ``pixel_attention_mask`` and ``spatial_shapes``). ``side``: ``"query"``
        or ``"document"``, which cell embeds the batch (the same one unless the model has
        a separate document side); ``"query+document"``: the first half of the batch are
        queries, the second half their documents (training: one call, so a distributed
        wrapper sees one forward per step).

        ``text_presence`` / ``image_presence`` (``"all"``, ``"some"``, ``"none"``) with
        ``text_rows`` / ``image_rows`` (the indices of the items that have the modality,
        when only some do) say the same as the masks as plain Python data: the processor
        passes them, so the forward never waits for the device and compiles without
        graph breaks. Without them they are read once from the masks (one host sync).
        """
        if side == PAIRED_SIDES:
            # Training: split the batch in halves, each with explicit masks (its presence is read from
            # them, one host read per half), since row indices of the whole batch do not split.
            if text_presence is not None:
                like = input_ids if input_ids is not None else pixel_values
                text_mask = _presence_mask(text_presence, text_mask, text_rows, like.shape[0], like.device)
                image_mask = _presence_mask(image_presence, image_mask, image_rows, like.shape[0], like.device)
            halves = [{k: v.chunk(2, dim=0)[i] if torch.is_tensor(v) else v for k, v in dict(
                input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, text_mask=text_mask,
                image_mask=image_mask, **vision_kwargs).items()} for i in (0, 1)]
            parts = [self.forward(**half, return_state=return_state, side=s) for half, s in zip(halves, SIDES)]
            return ReT2Output(embeddings=torch.cat([p.embeddings for p in parts]),
                              state=torch.cat([p.state for p in parts]) if return_state else None)
        text_adapter, vision_adapter, ret_cell, late_proj = self.side_modules(side)
        if input_ids is None and pixel_values is None:
            raise ValueError("ReT2Model.forward needs input_ids, pixel_values, or both")
        presence = self._presence(input_ids, pixel_values, text_mask, image_mask, text_presence, image_presence,
                                  text_rows, image_rows)
        batch = input_ids.shape[0] if input_ids is not None else pixel_values.shape[0]
        device = self.ret_cell.query_hidden_states.device
        # A mask is needed by the gates only when some items lack the modality.
        gate_text_mask = _gate_mask(text_mask, presence.text_rows, batch, device) if presence.text == SOME else None
        gate_image_mask = (
            _gate_mask(image_mask, presence.image_rows, batch, device) if presence.image == SOME else None
        )

        text_steps = (
            self._text_tokens(input_ids, attention_mask, presence.text_rows, text_adapter)
            if presence.text != NONE else None
        )
        extra = {k: v for k, v in vision_kwargs.items() if k in self.spec.extra_vision_inputs and v is not None}
        vision_steps = (
            self._vision_tokens(pixel_values.to(self.dtype), extra, presence.image_rows, vision_adapter)
            if presence.image != NONE else None
        )

        state = ret_cell.initial_state(batch)
        for step in range(self.config.num_steps):
            state = ret_cell(
                state,
                text_steps[step] if text_steps is not None else None,
                vision_steps[step] if vision_steps is not None else None,
                gate_text_mask,
                gate_image_mask,
                shared_state=step == 0 and not self.training,
            )
        if self.config.late_interaction:  # one vector per state token, each normalised (MaxSim)
            embeddings = F.normalize(late_proj(state), p=2, dim=-1)
        else:  # the pooled head: late_proj(mean(H))
            embeddings = F.normalize(late_proj(state.mean(dim=1)), p=2, dim=-1)
        return ReT2Output(embeddings=embeddings, state=state if return_state else None)

    def _presence(
        self,
        input_ids: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        text_presence: str | None,
        image_presence: str | None,
        text_rows: torch.Tensor | None,
        image_rows: torch.Tensor | None,
    ) -> Presence:
        """Which items have which modality, checked against the inputs given (host-side only)."""
        device = self.ret_cell.query_hidden_states.device
        if text_presence is None or image_presence is None:
            if text_presence is not None or image_presence is not None:
                raise ValueError("give both text_presence and image_presence, or neither")
            batch = input_ids.shape[0] if input_ids is not None else pixel_values.shape[0]
            if text_mask is None and image_mask is None:  # the inputs given say it all: no mask to read
                presence = Presence(ALL if input_ids is not None else NONE, ALL if pixel_values is not None else NONE)
            else:
                text_mask = _float_mask(text_mask, device, batch, input_ids is not None)
                image_mask = _float_mask(image_mask, device, batch, pixel_values is not None)
                presence = Presence.from_masks(text_mask, image_mask)
        else:
            for name, value in (("text_presence", text_presence), ("image_presence", image_presence)):
                if value not in PRESENCE_VALUES:
                    raise ValueError(f"{name} must be one of {PRESENCE_VALUES}, got {value!r}")
            for name, value, rows in (("text", text_presence, text_rows), ("image", image_presence, image_rows)):
                if (value == SOME) != (rows is not None):
                    raise ValueError(f"{name}_rows is required exactly when {name}_presence is 'some'")
            presence = Presence(text_presence, image_presence,
                                None if text_rows is None else text_rows.to(device, non_blocking=True),
                                None if image_rows is None else image_rows.to(device, non_blocking=True))
        if input_ids is None and presence.text != NONE:
            raise ValueError("text_mask marks items with text but no input_ids were given")
        if pixel_values is None and presence.image != NONE:
            raise ValueError("image_mask marks items with an image but no pixel_values were given")
        if presence.text == NONE and presence.image == NONE:
            raise ValueError("every item needs text, an image, or both (found one with neither)")
        if SOME in (presence.text, presence.image) and ALL not in (presence.text, presence.image):
            if presence.text != SOME or presence.image != SOME:
                raise ValueError("every item needs text, an image, or both (found one with neither)")
        return presence


def _presence_mask(presence: str, mask: torch.Tensor | None, rows: torch.Tensor | None, batch: int,
                   device: torch.device) -> torch.Tensor:
    """The 0/1 mask a presence value stands for (``mask`` itself when given)."""
    if presence == SOME:
        return _gate_mask(mask, rows.to(device), batch, device)
    return _float_mask(mask, device, batch, default=presence == ALL)


def _gate_mask(mask: torch.Tensor | None, rows: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The 0/1 gate mask of a modality only some items have: the given mask, else built from the rows."""
    if mask is not None:
        return _float_mask(mask, device)
    return torch.zeros(batch, device=device).index_fill_(0, rows, 1.0)


def _float_mask(mask: torch.Tensor | None, device: torch.device, batch: int | None = None,
                default: bool = True) -> torch.Tensor:
    """A 0/1 float mask on ``device`` (anything > 0 counts as present); ``None``: all ``default``."""
    if mask is None:
        return torch.full((batch,), 1.0 if default else 0.0, device=device)
    return (mask.to(device) > 0).to(torch.float32)


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Turn on activation (gradient) checkpointing under its current ``transformers`` name."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


# Let the Auto classes resolve ReT-2 checkpoints (AutoConfig / AutoModel.from_pretrained(dir)).
AutoConfig.register("ret2", ReT2Config, exist_ok=True)
AutoModel.register(ReT2Config, ReT2Model, exist_ok=True)
