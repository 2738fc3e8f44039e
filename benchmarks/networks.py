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
            self.body = nn.Sequential(_conv(cin, mid, 1), _conv(mid, mid, 3, stride),
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
    """ResNet-50 (He et al. 2016), stride on the 3x3 (v1.5)."""
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


NETWORKS = {"mobilenet": mobilenet, "mobilenet_v2": mobilenet_v2, "resnet18": resnet18, "resnet50": resnet50,
            "squeezenet": squeezenet, "vgg16": vgg16}
INPUT = {"squeezenet": 227}  # the others take 224x224


def export(name: str, path) -> None:
    size = INPUT.get(name, 224)
    model = NETWORKS[name]().eval()
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(path), input_names=["image"], dynamo=False)


def random_reader(size: int, count: int = 2):
    """onnxruntime's calibration protocol over `count` random images: an estimate counts work, so
    the ranges need not be realistic."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{"image": np.random.default_rng(i).normal(size=(1, 3, size, size)).astype(np.float32)}
                                 for i in range(count)])

        def get_next(self):
            return next(self.samples, None)

    return Reader()
