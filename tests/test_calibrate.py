import torch

from noiseadaptor import QuantConfig, init_scales, prepare, quantizers
from noiseadaptor.calibrate import fit_scale
from noiseadaptor.models import create_model


def test_fit_scale_finds_the_l2_optimum():
    torch.manual_seed(0)
    v = torch.randn(20_000) * 2
    target = v.clamp(min=0)
    p = 2
    s = fit_scale(v, target, p)
    dense = torch.linspace(0.01, 5, 5000)
    err = torch.stack([((c * torch.floor(v / c + 0.5).clamp(0, p) - target) ** 2).sum() for c in dense])
    best = err.min()
    ours = ((s * torch.floor(v / s + 0.5).clamp(0, p) - target) ** 2).sum()
    assert ours <= best * 1.001


def test_init_scales_layer_by_layer():
    torch.manual_seed(0)
    q = prepare(create_model("small-cnn", num_classes=10, in_channels=1), QuantConfig(p=2)).train()
    x = torch.randn(32, 1, 8, 8)
    scales = init_scales(q, (x, torch.zeros(32)))
    assert list(scales) == [name for name, _ in quantizers(q)]
    assert all(s > 0 and s != 1.0 for s in scales.values())
    assert q.training and all(layer.enabled for _, layer in quantizers(q))
    # with the fitted scales the quantized net is closer to the float one than with the default s=1
    q.eval()
    for _, layer in quantizers(q):
        layer.enabled = False
    reference = q(x)
    for _, layer in quantizers(q):
        layer.enabled = True
    fitted = (q(x) - reference).pow(2).mean()
    for _, layer in quantizers(q):
        layer.scale.data.fill_(1.0)
    assert fitted < (q(x) - reference).pow(2).mean()
