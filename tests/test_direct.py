import pytest
import torch
from torch import nn

from noiseadaptor import evaluate, fit
from noiseadaptor.data import digits
from noiseadaptor.direct import DirectConfig, LIFNeuron, to_direct_snn
from noiseadaptor.models import create_model


def test_gradient_flows_only_through_the_smooth_part():
    torch.manual_seed(0)
    neuron = LIFNeuron(DirectConfig(alpha=2.0, noise_p=0.5)).train()
    x = torch.linspace(-2, 2, 401, requires_grad=True)
    neuron.spike(x).sum().backward()
    inside = (x.detach().abs() < 1.0).float()  # |x| < a/2
    assert torch.allclose(x.grad, inside / 2.0)  # dH/dx = 1/a inside, whatever the mask drew
    # Eq. 11: dH/da = -x/a^2 inside
    assert neuron.alpha.grad.item() == pytest.approx(float((-x.detach() / 4.0 * inside).sum()), rel=1e-5)


def test_p_one_forward_is_the_spiking_network_and_eval_has_no_noise():
    torch.manual_seed(0)
    x = torch.randn(1000)
    heaviside = (x >= 0).float()
    sg = LIFNeuron(DirectConfig.surrogate_gradient(alpha=1.0)).train()
    assert torch.equal(sg.spike(x), heaviside)
    asgl = LIFNeuron(DirectConfig(noise_p=0.3)).train()
    noisy = asgl.spike(x)
    assert not torch.equal(noisy, heaviside) and ((noisy == heaviside) | ((noisy > 0) & (noisy < 1))).any()
    asgl.eval()
    assert torch.equal(asgl.spike(x), heaviside) and torch.equal(asgl.spike(x), asgl.spike(x))
    assert not sg.alpha.requires_grad and asgl.alpha.requires_grad


def test_lif_dynamics_hard_and_soft_reset():
    current = torch.tensor([0.6, 0.6, 0.6, 0.6]).reshape(4, 1)  # T=4, one neuron, tau=2: gamma 0.5
    hard = LIFNeuron(DirectConfig(T=4, tau=2.0, reset="hard")).eval()
    # u: 0.6, 0.9, 1.05 (fires), then reset to 0: 0.6
    assert hard(current).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    soft = LIFNeuron(DirectConfig(T=4, tau=2.0, reset="soft")).eval()
    # u: 0.6, 0.9, 1.05 (fires), 0.5*(1.05-1) + 0.6 = 0.625
    assert soft(current).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_direct_training_learns_digits_and_keeps_the_float_model():
    torch.manual_seed(0)
    train, test = digits().loaders(64, eval_batch_size=512)
    float_model = create_model("small-cnn", 10, 1, width=8)
    snn = to_direct_snn(float_model, DirectConfig(T=2, alpha=1.0))
    assert len(snn.neurons()) == 3 and any(isinstance(m, nn.ReLU) for m in float_model.modules())
    widths = []
    fit(snn, train, 3, lr=0.05, progress=False,
        on_epoch_end=lambda epoch, row: widths.append([n.alpha.item() for _, n in snn.neurons()]))
    assert evaluate(snn, test) > 0.5
    assert widths[-1] != [1.0, 1.0, 1.0]  # learned


def test_noise_probability_schedule_follows_the_paper_and_fit():
    """Appendix A.3: p <- 1 - (1 - p) * zeta at each milestone; fit's epochs see it (0-based)."""
    config = DirectConfig(noise_p=0.6, noise_decay=0.8, noise_milestones=[90, 210, 270, 285])
    assert config.noise_milestones == (90, 210, 270, 285)
    expected = {0: 0.6, 89: 0.6, 90: 0.68, 209: 0.68, 210: 0.744, 285: 1 - 0.4 * 0.8**4, 299: 1 - 0.4 * 0.8**4}
    for epoch, p in expected.items():
        assert config.noise_probability(epoch) == pytest.approx(p)
    assert DirectConfig.surrogate_gradient(noise_decay=0.5, noise_milestones=(1,)).noise_probability(5) == 1.0

    torch.manual_seed(0)
    train, _ = digits().loaders(256)
    snn = to_direct_snn(create_model("small-cnn", 10, 1, width=4),
                        DirectConfig(T=1, noise_p=0.5, noise_decay=0.5, noise_milestones=(1, 2)))
    seen = []
    fit(snn, train, 3, lr=0.05, progress=False, on_epoch_start=snn.start_epoch,
        on_epoch_end=lambda epoch, row: seen.append([n.noise_p for _, n in snn.neurons()]))
    assert seen == [[0.5] * 3, [0.75] * 3, [0.875] * 3]


def test_bad_direct_config():
    with pytest.raises(ValueError, match="T must be"):
        DirectConfig(T=0)
    with pytest.raises(ValueError, match="probability"):
        DirectConfig(noise_p=1.5)
    with pytest.raises(ValueError, match="width"):
        DirectConfig(alpha=0)
    with pytest.raises(ValueError, match="threshold must be positive"):
        DirectConfig(threshold=0)
    with pytest.raises(ValueError, match="zeta"):
        DirectConfig(noise_decay=1.5)
    with pytest.raises(ValueError, match="milestones"):
        DirectConfig(noise_milestones=(20, 10))
