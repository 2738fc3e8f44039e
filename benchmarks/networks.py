"""The standard networks of the published-measurements corpus (toolkit/device_profiles/measurements/),
written here so that the estimator runs on exactly the architectures that were measured. Weights
are random: an estimate counts work, not values. Each follows ncnn's benchmark model of that name.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


def mobilenet() -> nn.Module:
    """MobileNet v1 (Howard et al. 2017), width 1.0."""
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
            *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    layers = [_conv(3, 32, 3, 2)]
    for cin, cout, stride in plan:
        layers += [_conv(cin, cin, 3, stride, groups=cin), _conv(cin, cout, 1)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))


class _Inverted(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [_conv(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [_conv(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2() -> nn.Module:
    """MobileNet v2 (Sandler et al. 2018), width 1.0."""
    plan = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers, cin = [_conv(3, 32, 3, 2, act=nn.ReLU6)], 32
    for expand, cout, repeats, stride in plan:
        for i in range(repeats):
            layers.append(_Inverted(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    return nn.Sequential(*layers, _conv(320, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(1280, 1000))


class _Residual(nn.Module):
    def __init__(self, cin, cout, stride, bottleneck):
        super().__init__()
        if bottleneck:
            mid = cout // 4
            # stride on the first 1x1, as in the published (Caffe) ResNet-50 that ncnn benchmarks
            self.body = nn.Sequential(_conv(cin, mid, 1, stride), _conv(mid, mid, 3),
                                      nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.body = nn.Sequential(_conv(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def _resnet(blocks, bottleneck) -> nn.Module:
    widths = [256, 512, 1024, 2048] if bottleneck else [64, 128, 256, 512]
    layers, cin = [_conv(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64
    for stage, (count, cout) in enumerate(zip(blocks, widths)):
        for i in range(count):
            layers.append(_Residual(cin, cout, 2 if i == 0 and stage > 0 else 1, bottleneck))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000))


def resnet18() -> nn.Module:
    """ResNet-18 (He et al. 2016)."""
    return _resnet([2, 2, 2, 2], bottleneck=False)


def resnet50() -> nn.Module:
    """ResNet-50 (He et al. 2016), stride on the first 1x1 (v1, not torchvision's v1.5)."""
    return _resnet([3, 4, 6, 3], bottleneck=True)


class _Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


def squeezenet() -> nn.Module:
    """SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 variant ncnn benchmarks), 227x227 input."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), _Fire(64, 16, 64), _Fire(128, 16, 64), pool(),
                         _Fire(128, 32, 128), _Fire(256, 32, 128), pool(), _Fire(256, 48, 192), _Fire(384, 48, 192),
                         _Fire(384, 64, 256), _Fire(512, 64, 256), nn.Conv2d(512, 1000, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def vgg16() -> nn.Module:
    """VGG-16 (Simonyan and Zisserman 2014)."""
    layers, cin = [], 3
    for width, count in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        for _ in range(count):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096),
                         nn.ReLU(), nn.Linear(4096, 1000))


class _SE(nn.Module):
    def __init__(self, channels, squeeze, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeeze, 1), act(),
                                  nn.Conv2d(squeeze, channels, 1), gate())

    def forward(self, x):
        return x * self.body(x)


class _MBConv(nn.Module):
    """An inverted residual: 1x1 expansion, kxk depthwise, optional squeeze-excitation, 1x1 projection."""

    def __init__(self, cin, hidden, cout, k, stride, se=0, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        layers = [_conv(cin, hidden, 1, act=act)] if hidden != cin else []
        layers.append(_conv(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(_SE(hidden, se, nn.ReLU if gate is nn.Hardsigmoid else act, gate))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def _head(cin, classes=1000, hidden=None, act=nn.ReLU):
    tail = [nn.Linear(cin, hidden), act(), nn.Linear(hidden, classes)] if hidden else [nn.Linear(cin, classes)]
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), *tail]


def _mobilenet_v3(plan, relu_blocks, last, hidden) -> nn.Module:
    """(kernel, expansion width, out, squeeze-excitation, stride) blocks; ReLU in the first ones, hard-swish after."""
    layers, cin = [_conv(3, 16, 3, 2, act=nn.Hardswish)], 16
    for i, (k, expanded, cout, se, stride) in enumerate(plan):
        act = nn.ReLU if i < relu_blocks else nn.Hardswish
        layers.append(_MBConv(cin, expanded, cout, k, stride, se=((expanded // 4 + 4) // 8 * 8) * se, act=act,
                              gate=nn.Hardsigmoid))
        cin = cout
    return nn.Sequential(*layers, _conv(cin, last, 1, act=nn.Hardswish), *_head(last, hidden=hidden, act=nn.Hardswish))


def mobilenet_v3() -> nn.Module:
    """MobileNetV3-Large (Howard et al. 2019)."""
    plan = [(3, 16, 16, 0, 1), (3, 64, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 1, 2), (5, 120, 40, 1, 1),
            (5, 120, 40, 1, 1), (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1),
            (3, 480, 112, 1, 1), (3, 672, 112, 1, 1), (5, 672, 160, 1, 2), (5, 960, 160, 1, 1), (5, 960, 160, 1, 1)]
    return _mobilenet_v3(plan, 6, 960, 1280)


def mobilenet_v3_small() -> nn.Module:
    """MobileNetV3-Small (Howard et al. 2019)."""
    plan = [(3, 16, 16, 1, 2), (3, 72, 24, 0, 2), (3, 88, 24, 0, 1), (5, 96, 40, 1, 2), (5, 240, 40, 1, 1),
            (5, 240, 40, 1, 1), (5, 120, 48, 1, 1), (5, 144, 48, 1, 1), (5, 288, 96, 1, 2), (5, 576, 96, 1, 1),
            (5, 576, 96, 1, 1)]
    return _mobilenet_v3(plan, 3, 576, 1024)


def _mobile_stages(plan, stem, se_ratio, act) -> list:
    """(expand, kernel, stride, out, repeats) stages after a stem of `stem` channels."""
    layers, cin = [], stem
    for expand, k, stride, cout, repeats in plan:
        for i in range(repeats):
            layers.append(_MBConv(cin, cin * expand, cout, k, stride if i == 0 else 1, se=int(cin * se_ratio), act=act))
            cin = cout
    return layers


def mnasnet() -> nn.Module:
    """MnasNet-A1 without squeeze-excitation, depth 1.0 (Tan et al. 2019; torchvision's mnasnet1_0)."""
    plan = [(3, 3, 2, 24, 3), (3, 5, 2, 40, 3), (6, 5, 2, 80, 3), (6, 3, 1, 96, 2), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    stem = [_conv(3, 32, 3, 2), _conv(32, 32, 3, groups=32), nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16)]
    return nn.Sequential(*stem, *_mobile_stages(plan, 16, 0, nn.ReLU), _conv(320, 1280, 1), *_head(1280))


def efficientnet_b0() -> nn.Module:
    """EfficientNet-B0 (Tan and Le 2019)."""
    plan = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
            (6, 3, 1, 320, 1)]
    return nn.Sequential(_conv(3, 32, 3, 2, act=nn.SiLU), *_mobile_stages(plan, 32, 0.25, nn.SiLU),
                         _conv(320, 1280, 1, act=nn.SiLU), *_head(1280))


class _Shuffle(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.left = nn.Sequential(_conv(cin, cin, 3, stride, groups=cin, act=nn.Identity), _conv(cin, half, 1)) \
            if stride == 2 else nn.Identity()
        source = cin if stride == 2 else half
        self.right = nn.Sequential(_conv(source, half, 1), _conv(half, half, 3, stride, groups=half, act=nn.Identity),
                                   _conv(half, half, 1))

    def forward(self, x):
        left, right = (x, x) if self.stride == 2 else x.chunk(2, dim=1)
        out = torch.cat([self.left(left), self.right(right)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2() -> nn.Module:
    """ShuffleNet V2 1.0x (Ma et al. 2018)."""
    layers, cin = [_conv(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)], 24
    for repeats, cout in [(4, 116), (8, 232), (4, 464)]:
        for i in range(repeats):
            layers.append(_Shuffle(cin, cout, 2 if i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, _conv(464, 1024, 1), *_head(1024))


class _RegNetY(nn.Module):
    def __init__(self, cin, cout, stride, group_width=8):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, 1), _conv(cout, cout, 3, stride, groups=cout // group_width),
                                  _SE(cout, int(round(0.25 * cin))), nn.Conv2d(cout, cout, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def regnety_400m() -> nn.Module:
    """RegNetY-400MF (Radosavovic et al. 2020)."""
    layers, cin = [_conv(3, 32, 3, 2)], 32
    for depth, cout in [(1, 48), (3, 104), (6, 208), (6, 440)]:
        for i in range(depth):
            layers.append(_RegNetY(cin, cout, 2 if i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, *_head(440))


class _Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool):
        super().__init__()
        self.branches = nn.ModuleList([_conv(cin, c1, 1), nn.Sequential(_conv(cin, c3r, 1), _conv(c3r, c3, 3)),
                                       nn.Sequential(_conv(cin, c5r, 1), _conv(c5r, c5, 5)),
                                       nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv(cin, pool, 1))])

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def googlenet() -> nn.Module:
    """GoogLeNet (Szegedy et al. 2014), 5x5 branches as published (BVLC, which ncnn benchmarks)."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(_conv(3, 64, 7, 2), pool(), _conv(64, 64, 1), _conv(64, 192, 3), pool(),
                         _Inception(192, 64, 96, 128, 16, 32, 32), _Inception(256, 128, 128, 192, 32, 96, 64), pool(),
                         _Inception(480, 192, 96, 208, 16, 48, 64), _Inception(512, 160, 112, 224, 24, 64, 64),
                         _Inception(512, 128, 128, 256, 24, 64, 64), _Inception(512, 112, 144, 288, 32, 64, 64),
                         _Inception(528, 256, 160, 320, 32, 128, 128), pool(),
                         _Inception(832, 256, 160, 320, 32, 128, 128), _Inception(832, 384, 192, 384, 48, 128, 128),
                         *_head(1024))


def alexnet() -> nn.Module:
    """AlexNet (Krizhevsky et al. 2012) as BVLC's Caffe model that ncnn benchmarks: two towers
    (conv2, conv4, conv5 in 2 groups), 227x227 input."""
    pool = lambda: nn.MaxPool2d(3, 2)  # noqa: E731
    return nn.Sequential(nn.Conv2d(3, 96, 11, 4), nn.ReLU(), pool(), nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(),
                         pool(), nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1, groups=2),
                         nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), pool(), nn.Flatten(),
                         nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 1000))


# The Inception family as TF-slim builds it (the .tflite models TensorFlow Lite's benchmark pages time).
def _cv(cin, cout, k, stride=1, valid=False):
    """A slim conv: kernel k (int or (h, w)), 'SAME' padding unless valid, BatchNorm, ReLU."""
    kh, kw = (k, k) if isinstance(k, int) else k
    pad = 0 if valid else (kh // 2, kw // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, (kh, kw), stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def _chain(cin, *specs):
    """Convolutions one after another: (cout, kernel[, stride, valid]) each."""
    layers = []
    for cout, k, *rest in specs:
        layers.append(_cv(cin, cout, k, *rest))
        cin = cout
    return nn.Sequential(*layers)


class _Concat(nn.Module):
    """Branches side by side; a branch that is a (trunk, heads) pair ends in heads side by side (v3's 7b/7c)."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(b if isinstance(b, nn.Module) else _Split(*b) for b in branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class _Split(nn.Module):
    def __init__(self, trunk, heads):
        super().__init__()
        self.trunk, self.heads = trunk, nn.ModuleList(heads)

    def forward(self, x):
        x = self.trunk(x)
        return torch.cat([h(x) for h in self.heads], 1)


def _pool(cin, cout):
    """slim's average-pool branch: 3x3 stride 1, then a 1x1 convolution."""
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _cv(cin, cout, 1))


def _max():
    return nn.MaxPool2d(3, 2)


class _Residual35(nn.Module):
    """Inception-ResNet's blocks: branches, a linear 1x1 back to the input width, scaled, added."""

    def __init__(self, cin, branches, width, scale, relu=True):
        super().__init__()
        self.branches, self.up = _Concat(*branches), nn.Conv2d(width, cin, 1)
        self.scale, self.relu = scale, relu

    def forward(self, x):
        x = x + self.scale * self.up(self.branches(x))
        return torch.relu(x) if self.relu else x


def _v3_a(cin, pool):
    return _Concat(_cv(cin, 64, 1), _chain(cin, (48, 1), (64, 5)), _chain(cin, (64, 1), (96, 3), (96, 3)),
                   _pool(cin, pool))


def _v3_b(c):
    return _Concat(_cv(768, 192, 1), _chain(768, (c, 1), (c, (1, 7)), (192, (7, 1))),
                   _chain(768, (c, 1), (c, (7, 1)), (c, (1, 7)), (c, (7, 1)), (192, (1, 7))), _pool(768, 192))


def _v3_c(cin):
    split = lambda trunk: (trunk, [_cv(384, 384, (1, 3)), _cv(384, 384, (3, 1))])  # noqa: E731
    return _Concat(_cv(cin, 320, 1), split(_cv(cin, 384, 1)), split(_chain(cin, (448, 1), (384, 3))), _pool(cin, 192))


def inception_v3() -> nn.Module:
    """Inception v3 (Szegedy et al. 2016), TF-slim's, 299x299 input."""
    stem = [_chain(3, (32, 3, 2, True), (32, 3, 1, True), (64, 3)), _max(),
            _chain(64, (80, 1, 1, True), (192, 3, 1, True)), _max()]
    reduce_a = _Concat(_cv(288, 384, 3, 2, True), _chain(288, (64, 1), (96, 3), (96, 3, 2, True)), _max())
    reduce_b = _Concat(_chain(768, (192, 1), (320, 3, 2, True)),
                       _chain(768, (192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2, True)), _max())
    return nn.Sequential(*stem, _v3_a(192, 32), _v3_a(256, 64), _v3_a(288, 64), reduce_a, _v3_b(128), _v3_b(160),
                         _v3_b(160), _v3_b(192), reduce_b, _v3_c(1280), _v3_c(2048), *_head(2048, 1001))


def _v4_stem() -> list:
    return [_chain(3, (32, 3, 2, True), (32, 3, 1, True), (64, 3)), _Concat(_max(), _cv(64, 96, 3, 2, True)),
            _Concat(_chain(160, (64, 1), (96, 3, 1, True)),
                    _chain(160, (64, 1), (64, (1, 7)), (64, (7, 1)), (96, 3, 1, True))),
            _Concat(_cv(192, 192, 3, 2, True), _max())]


def inception_v4() -> nn.Module:
    """Inception v4 (Szegedy et al. 2017), TF-slim's, 299x299 input."""
    a = lambda: _Concat(_pool(384, 96), _cv(384, 96, 1), _chain(384, (64, 1), (96, 3)),  # noqa: E731
                        _chain(384, (64, 1), (96, 3), (96, 3)))
    b = lambda: _Concat(_pool(1024, 128), _cv(1024, 384, 1),  # noqa: E731
                        _chain(1024, (192, 1), (224, (1, 7)), (256, (7, 1))),
                        _chain(1024, (192, 1), (192, (7, 1)), (224, (1, 7)), (224, (7, 1)), (256, (1, 7))))
    pair = lambda cin: [_cv(cin, 256, (1, 3)), _cv(cin, 256, (3, 1))]  # noqa: E731
    c = lambda: _Concat(_pool(1536, 256), _cv(1536, 256, 1), (_cv(1536, 384, 1), pair(384)),  # noqa: E731
                        (_chain(1536, (384, 1), (448, (3, 1)), (512, (1, 3))), pair(512)))
    reduce_a = _Concat(_cv(384, 384, 3, 2, True), _chain(384, (192, 1), (224, 3), (256, 3, 2, True)), _max())
    reduce_b = _Concat(_chain(1024, (192, 1), (192, 3, 2, True)),
                       _chain(1024, (256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, 2, True)), _max())
    return nn.Sequential(*_v4_stem(), *[a() for _ in range(4)], reduce_a, *[b() for _ in range(7)], reduce_b,
                         *[c() for _ in range(3)], *_head(1536, 1001))


def inception_resnet_v2() -> nn.Module:
    """Inception-ResNet v2 (Szegedy et al. 2017), TF-slim's, 299x299 input."""
    stem = [_chain(3, (32, 3, 2, True), (32, 3, 1, True), (64, 3)), _max(),
            _chain(64, (80, 1, 1, True), (192, 3, 1, True)), _max(), _Concat(_cv(192, 96, 1), _chain(192, (48, 1), (64, 5)), _chain(192, (64, 1), (96, 3), (96, 3)),
                            _pool(192, 64))]
    b35 = lambda: _Residual35(320, [_cv(320, 32, 1), _chain(320, (32, 1), (32, 3)),  # noqa: E731
                                    _chain(320, (32, 1), (48, 3), (64, 3))], 128, 0.17)
    b17 = lambda: _Residual35(1088, [_cv(1088, 192, 1),  # noqa: E731
                                     _chain(1088, (128, 1), (160, (1, 7)), (192, (7, 1)))], 384, 0.1)
    b8 = lambda relu=True: _Residual35(2080, [_cv(2080, 192, 1),  # noqa: E731
                                              _chain(2080, (192, 1), (224, (1, 3)), (256, (3, 1)))], 448, 0.2, relu)
    reduce_a = _Concat(_cv(320, 384, 3, 2, True), _chain(320, (256, 1), (256, 3), (384, 3, 2, True)), _max())
    reduce_b = _Concat(_chain(1088, (256, 1), (384, 3, 2, True)), _chain(1088, (256, 1), (288, 3, 2, True)),
                       _chain(1088, (256, 1), (288, 3), (320, 3, 2, True)), _max())
    return nn.Sequential(*stem, *[b35() for _ in range(10)], reduce_a, *[b17() for _ in range(20)], reduce_b,
                         *[b8() for _ in range(9)], b8(False), _cv(2080, 1536, 1), *_head(1536, 1001))


def inception_v1() -> nn.Module:
    """Inception v1 as TF-slim builds it (the quantized .tflite TensorFlow Lite's hosted-models page
    times): GoogLeNet with BatchNorm, its "5x5" branches 3x3 (slim's Conv2d_0a_3x3), 224x224 input."""
    def block(cin, b0, b1r, b1, b2r, b2, b3):
        return _Concat(_cv(cin, b0, 1), _chain(cin, (b1r, 1), (b1, 3)), _chain(cin, (b2r, 1), (b2, 3)),
                       nn.Sequential(nn.MaxPool2d(3, 1, 1), _cv(cin, b3, 1)))
    pool = lambda k=3: nn.MaxPool2d(k, 2, (k - 1) // 2)  # noqa: E731
    return nn.Sequential(_cv(3, 64, 7, 2), pool(), _cv(64, 64, 1), _cv(64, 192, 3), pool(),
                         block(192, 64, 96, 128, 16, 32, 32), block(256, 128, 128, 192, 32, 96, 64), pool(),
                         block(480, 192, 96, 208, 16, 48, 64), block(512, 160, 112, 224, 24, 64, 64),
                         block(512, 128, 128, 256, 24, 64, 64), block(512, 112, 144, 288, 32, 64, 64),
                         block(528, 256, 160, 320, 32, 128, 128), pool(2),
                         block(832, 256, 160, 320, 32, 128, 128), block(832, 384, 192, 384, 48, 128, 128),
                         *_head(1024, 1001))


def inception_v2() -> nn.Module:
    """Inception v2 as TF-slim builds it (BN-Inception: 5x5 branches as two 3x3, a separable 7x7 stem
    with depth multiplier 8), 224x224 input."""
    def block(cin, b0, b1r, b1, b2r, b2, b3, pool="avg"):
        last = nn.AvgPool2d(3, 1, 1, count_include_pad=False) if pool == "avg" else nn.MaxPool2d(3, 1, 1)
        return _Concat(*([_cv(cin, b0, 1)] if b0 else []), _chain(cin, (b1r, 1), (b1, 3)),
                       _chain(cin, (b2r, 1), (b2, 3), (b2, 3)), nn.Sequential(last, _cv(cin, b3, 1)))

    def reduce(cin, b0r, b0, b1r, b1):
        return _Concat(_chain(cin, (b0r, 1), (b0, 3, 2)), _chain(cin, (b1r, 1), (b1, 3), (b1, 3, 2)),
                       nn.MaxPool2d(3, 2, 1))
    stem = nn.Sequential(nn.Conv2d(3, 24, 7, 2, 3, groups=3, bias=False), nn.Conv2d(24, 64, 1, bias=False),
                         nn.BatchNorm2d(64), nn.ReLU())
    pool = lambda: nn.MaxPool2d(3, 2, 1)  # noqa: E731
    return nn.Sequential(stem, pool(), _cv(64, 64, 1), _cv(64, 192, 3), pool(),
                         block(192, 64, 64, 64, 64, 96, 32), block(256, 64, 64, 96, 64, 96, 64),
                         reduce(320, 128, 160, 64, 96),
                         block(576, 224, 64, 96, 96, 128, 128), block(576, 192, 96, 128, 96, 128, 128),
                         block(576, 160, 128, 160, 128, 160, 96), block(576, 96, 128, 192, 160, 192, 96),
                         reduce(576, 128, 192, 192, 256),
                         block(1024, 352, 192, 320, 160, 224, 128), block(1024, 352, 192, 320, 192, 224, 128, "max"),
                         *_head(1024, 1001))


class _PreActBottleneck(nn.Module):
    """ResNet v2's unit (He et al. 2016, identity mappings): BatchNorm and ReLU before each convolution,
    the stride on the 3x3, as TF-slim builds it."""

    def __init__(self, cin, depth, stride):
        super().__init__()
        inner = depth // 4
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(cin, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
                                  nn.Conv2d(inner, inner, 3, stride, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
                                  nn.Conv2d(inner, depth, 1))
        self.skip = (nn.Conv2d(cin, depth, 1, stride) if cin != depth else
                     nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity())
        self.projects = cin != depth

    def forward(self, x):
        pre = self.pre(x)
        return self.body(pre) + self.skip(pre if self.projects else x)


def resnet_v2_101() -> nn.Module:
    """ResNet v2 101 as TF-slim builds it (the .tflite TensorFlow Lite's hosted-models page times):
    units of 3, 4, 23, 3, each block's stride on its last unit, 299x299 input."""
    layers, cin = [nn.Conv2d(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)], 64
    for units, depth, stride in [(3, 256, 2), (4, 512, 2), (23, 1024, 2), (3, 2048, 1)]:
        for i in range(units):
            layers.append(_PreActBottleneck(cin, depth, stride if i == units - 1 else 1))
            cin = depth
    return nn.Sequential(*layers, nn.BatchNorm2d(cin), nn.ReLU(), *_head(cin, 1001))


class _NoNorm(nn.Module):
    """MobileBERT's NoNorm: an elementwise scale and shift in place of LayerNorm."""

    def __init__(self, width):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return x * self.weight + self.bias


class _Bottleneck(nn.Module):
    """A linear layer, optionally added to a residual, then NoNorm."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear, self.norm = nn.Linear(cin, cout), _NoNorm(cout)

    def forward(self, x, residual=None):
        y = self.linear(x)
        return self.norm(y if residual is None else y + residual)


class _MobileBertLayer(nn.Module):
    """MobileBERT (Sun et al. 2020) as its published configuration: 512 wide between blocks, a 128-wide
    bottleneck shared by queries and keys, 4 heads, 4 stacked feed-forward networks of 512."""

    def __init__(self, width=512, inner=128, ffn=512, heads=4, stacked=4):
        super().__init__()
        self.to_inner, self.to_shared = _Bottleneck(width, inner), _Bottleneck(width, inner)
        self.attention = nn.MultiheadAttention(inner, heads, kdim=inner, vdim=width, batch_first=True)
        self.attention_norm = _NoNorm(inner)
        self.ffns = nn.ModuleList(nn.Sequential(nn.Linear(inner, ffn), nn.ReLU(), nn.Linear(ffn, inner))
                                  for _ in range(stacked - 1))
        self.ffn_norms = nn.ModuleList(_NoNorm(inner) for _ in range(stacked - 1))
        self.last = nn.Sequential(nn.Linear(inner, ffn), nn.ReLU())
        self.last_out = _Bottleneck(ffn, inner)
        self.out = _Bottleneck(inner, width)

    def forward(self, x):
        inner, shared = self.to_inner(x), self.to_shared(x)
        h = self.attention_norm(self.attention(shared, shared, x, need_weights=False)[0] + inner)
        for ffn, norm in zip(self.ffns, self.ffn_norms):
            h = norm(ffn(h) + h)
        h = self.last_out(self.last(h), h)
        return self.out(h, x)


class _MobileBert(nn.Module):
    def __init__(self, vocab=30522, embedding=128, width=512, layers=24, positions=512):
        super().__init__()
        self.words, self.positions = nn.Embedding(vocab, embedding), nn.Embedding(positions, width)
        self.trigram = nn.Linear(3 * embedding, width)  # each token's embedding with its two neighbours'
        self.norm, self.layers = _NoNorm(width), nn.Sequential(*[_MobileBertLayer(width) for _ in range(layers)])
        self.span = nn.Linear(width, 2)  # SQuAD's answer start and end logits

    def forward(self, tokens):
        e = self.words(tokens)
        pad = torch.zeros_like(e[:, :1])
        e = torch.cat([torch.cat([e[:, 1:], pad], 1), e, torch.cat([pad, e[:, :-1]], 1)], 2)
        x = self.norm(self.trigram(e) + self.positions.weight[: tokens.shape[1]])
        return self.span(self.layers(x))


def mobilebert() -> nn.Module:
    """MobileBERT for SQuAD (the model TensorFlow Lite's question-answering page times), 384 tokens."""
    return _MobileBert()


# ShuffleNet v1, ProxylessNAS and EfficientNetV2-B0 are not written: their published rows stay unscored.
NETWORKS = {"mobilenet": mobilenet, "mobilenet_v2": mobilenet_v2, "mobilenet_v3": mobilenet_v3,
            "mobilenet_v3_small": mobilenet_v3_small, "mnasnet": mnasnet,
            "efficientnet_b0": efficientnet_b0, "shufflenet_v2": shufflenet_v2, "regnety_400m": regnety_400m,
            "squeezenet": squeezenet, "googlenet": googlenet, "alexnet": alexnet, "resnet18": resnet18,
            "resnet50": resnet50, "vgg16": vgg16, "inception_v3": inception_v3,
            "inception_v4": inception_v4, "inception_resnet_v2": inception_resnet_v2, "mobilebert": mobilebert,
            "inception_v1": inception_v1, "inception_v2": inception_v2, "resnet_v2_101": resnet_v2_101}
INPUT = {"squeezenet": 227, "alexnet": 227, "inception_v3": 299, "inception_v4": 299,
         "inception_resnet_v2": 299, "resnet_v2_101": 299, "mobilebert": 384}  # the others take 224x224 (mobilebert: tokens)
TOKENS = {"mobilebert"}  # networks whose input is a sequence of token ids, not an image


def example(name: str, size: int, seed: int = 0) -> torch.Tensor:
    """An input of the network at batch 1: an image of size x size, or `size` token ids."""
    generator = torch.Generator().manual_seed(seed)
    if name in TOKENS:
        return torch.randint(0, 30522, (1, size), generator=generator)
    return torch.randn(1, 3, size, size, generator=generator)


def export(name: str, path, size: int | None = None) -> None:
    size = size or INPUT.get(name, 224)
    model = NETWORKS[name]().eval()
    torch.onnx.export(model, (example(name, size),), str(path), input_names=["input"], dynamo=False)


def random_reader(size: int, count: int = 2, name: str = ""):
    """onnxruntime's calibration protocol over `count` random inputs: an estimate counts work, so
    the ranges need not be realistic."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{"input": example(name, size, i).numpy()} for i in range(count)])

        def get_next(self):
            return next(self.samples, None)

    return Reader()
