import pytest
import torch

from noiseadaptor import QuantConfig, init_scales, prepare, quantizers
from noiseadaptor.ann.calibrate import fit_scale
from noiseadaptor.ann.models import create_model


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


def _max_pool_net():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(128, 3),
    )


def test_batchnorm_after_a_replaced_max_pool_is_re_estimated():
    """prepare() swaps max- for average-pooling; the BatchNorm after the pool holds max-pooled statistics.
    init_scales re-estimates exactly those layers (not the one before the pool) on its batch."""
    from noiseadaptor.ann.preparation import batchnorms_after_replaced_pools

    torch.manual_seed(0)
    net = _max_pool_net()
    x = torch.randn(64, 1, 8, 8) + 1.0
    net.train()
    with torch.no_grad():
        for _ in range(50):  # converge the running statistics of the max-pool network
            net(x)
    q = prepare(net.eval(), QuantConfig(p=2))
    assert [name for name, _ in batchnorms_after_replaced_pools(q)] == ["5"]
    before, after = q.get_submodule("1"), q.get_submodule("5")
    first_stats, stale_mean = before.running_mean.clone(), after.running_mean.clone()

    init_scales(q, x, batchnorm=False)
    assert torch.equal(after.running_mean, stale_mean)
    init_scales(q, x)
    assert torch.equal(before.running_mean, first_stats)  # its input did not change
    assert not q.training and after.momentum == 0.1 and all(layer.enabled for _, layer in quantizers(q))
    # The new statistics are those of the float network with average-pooling on this batch.
    for _, layer in quantizers(q):
        layer.enabled = False
    seen = []
    hook = after.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    q(x)
    hook.remove()
    assert torch.allclose(after.running_mean, seen[0].mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(after.running_var, seen[0].var((0, 2, 3)), rtol=1e-4)
    assert (stale_mean - after.running_mean).abs().max() > 0.1  # max-pooled means were larger
    with pytest.raises(ValueError, match="more than one sample"):
        init_scales(q, x[:1])
    init_scales(q, x[:1], batchnorm=False)  # keeps the statistics, fits the scales


def test_no_batchnorm_re_estimation_without_max_pooling():
    from noiseadaptor.ann.calibrate import reestimate_batchnorm
    from noiseadaptor.ann.preparation import batchnorms_after_replaced_pools

    q = prepare(create_model("cifar-resnet20", num_classes=10), QuantConfig(p=2))
    assert batchnorms_after_replaced_pools(q) == []
    assert batchnorms_after_replaced_pools(_max_pool_net()) == []  # not prepared
    with pytest.raises(ValueError, match="no batches"):
        reestimate_batchnorm(q, [])


def test_trained_max_pool_net_keeps_its_accuracy_through_prepare():
    """The case that motivated the re-estimation: a small CNN with max-pooling, trained on the 8x8
    digits, quantized with init_scales and evaluated before any QAT."""
    import copy

    from noiseadaptor import evaluate, fit
    from noiseadaptor.data import digits

    torch.manual_seed(0)
    splits = digits()
    train, test = splits.loaders(64)
    net = create_model("small-cnn", splits.num_classes, splits.in_channels)
    fit(net, train, 4, lr=0.05, progress=False)
    batch = next(iter(train))
    accuracy = {"float": evaluate(net, test)}
    for batchnorm in (False, True):
        q = prepare(copy.deepcopy(net), QuantConfig(p=2))
        init_scales(q, batch, batchnorm=batchnorm)
        accuracy[f"quantized, batchnorm={batchnorm}"] = evaluate(q, test)
    print({k: f"{100 * v:.1f}%" for k, v in accuracy.items()})
    assert accuracy["float"] > 0.97
    assert accuracy["quantized, batchnorm=True"] > 0.85 > 0.3 > accuracy["quantized, batchnorm=False"]
