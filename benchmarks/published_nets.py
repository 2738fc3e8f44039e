"""Torch architectures of published models whose weights ship in pip wheels as state dicts, for the
corpus (`benchmarks/published_corpus.py`). Each is a `module:factory` with a `.safetensors` file the
corpus converts from the wheel's own file; parameter names match the package's, so its weights load
unchanged.

- MTCNN's RNet and ONet (facenet-pytorch 2.6, MIT; `facenet_pytorch/data/{rnet,onet}.pt`): copied
  here because facenet_pytorch imports torchvision, which would replace the CPU torch. The face
  probability is returned first (the package returns it last): the task metric reads the first output.
- WordLlama's l2_supercat_256 (wordllama 0.4, MIT; `wordllama/weights/l2_supercat_256.safetensors`):
  an embedding table, mean-pooled over the attention mask and normalised, as `WordLlama.embed(norm=True)`.
- latex-ocr-junia 0.1.3's image encoder (no license declared; `latex_ocr_junia/assets/best.pt`, a
  training checkpoint whose `model_state_dict` the corpus keeps the encoder of): a ViT, 8x8 patches
  of a 128x512 grey formula image, a learned position embedding, four pre-norm transformer blocks;
  as `LatexOCRModel.encode`. Attention is written out (the same parameters as nn.MultiheadAttention,
  whose eval fast path is a fused op the converters do not all take).
"""

from __future__ import annotations

import torch
from torch import nn


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, image):
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()  # the Caffe weights' axis order
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, image):
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


class WordLlama(nn.Module):
    def __init__(self, vocabulary: int = 32000, width: int = 256):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1)
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return nn.functional.normalize(pooled, dim=-1)


class PatchEmbedding(nn.Module):
    def __init__(self, width: int = 256, patch: int = 8, patches: int = 16 * 64):
        super().__init__()
        self.proj = nn.Conv2d(1, width, patch, stride=patch)
        self.pos_emb = nn.Parameter(torch.zeros(1, patches, width))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, image):
        return self.norm(self.proj(image).flatten(2).transpose(1, 2) + self.pos_emb)


class Attention(nn.Module):
    """nn.MultiheadAttention's parameters (in_proj_weight, in_proj_bias, out_proj), self-attention only."""

    def __init__(self, width: int = 256, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        weights = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    def __init__(self, width: int = 256, mlp: int = 1024):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width, eps=1e-6), Attention(width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Dropout(0), nn.Linear(mlp, width), nn.Dropout(0))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LatexEncoder(nn.Module):
    def __init__(self, layers: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbedding()
        self.encoder_blocks = nn.ModuleList(EncoderBlock() for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(256, eps=1e-6)

    def forward(self, image):
        x = self.patch_embed(image)
        for block in self.encoder_blocks:
            x = block(x)
        return self.encoder_norm(x)


# What each factory takes, one batch each (`edge-distill init published_nets:rnet` reads its inputs here).
EXAMPLE_INPUTS = {"rnet": {"image": torch.zeros(1, 3, 24, 24)}, "onet": {"image": torch.zeros(1, 3, 48, 48)},
                  "wordllama": {"input_ids": torch.zeros(1, 32, dtype=torch.int64),
                                "attention_mask": torch.ones(1, 32)},
                  "latex_encoder": {"image": torch.zeros(1, 1, 128, 512)}}


def rnet() -> nn.Module:
    return RNet().eval()


def onet() -> nn.Module:
    return ONet().eval()


def wordllama() -> nn.Module:
    return WordLlama().eval()


def latex_encoder() -> nn.Module:
    return LatexEncoder().eval()
