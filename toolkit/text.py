"""Text models as edge-distill runs them: (input_ids, attention_mask) in, one tensor out.

The wrappers make a Hugging Face model exportable as one graph: pooling and normalization
inside, so the ONNX, LiteRT and Core ML artifacts return the embedding the app uses.
"""

from __future__ import annotations

import torch


class SentenceEmbedder(torch.nn.Module):
    """A sentence-transformers model: encoder, mean (or CLS) pooling over the attended tokens, L2 norm."""

    def __init__(self, encoder, pooling: str = "mean", normalize: bool = True):
        super().__init__()
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1) if self.normalize else pooled


class Logits(torch.nn.Module):
    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask):
        return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
