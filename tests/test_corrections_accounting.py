import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noiseadaptor import IFNeuron, QuantConfig, convert, init_scales, prepare, quantizers, simulate
from noiseadaptor.snn.accounting import EnergyModel, fan_out


def test_negative_spike_fixes_over_firing_and_never_goes_below_zero():
    # Input 1.2 then -1.0 then 0: the ideal count is round(0.2 + ...) -> the neuron fires at step 1
    # (0.5 + 1.2 = 1.7), then its membrane drops to 0.7 - 1.0 = -0.3 < 0: it over-fired.
    inputs = [1.2, -1.0, 0.0]
    plain, corrected = IFNeuron(1.0), IFNeuron(1.0, negative_spikes=True)
    net_plain = sum(plain(torch.tensor([v])) for v in inputs)
    net_corrected = sum(corrected(torch.tensor([v])) for v in inputs)
    assert net_plain.item() == 1.0
    assert net_corrected.item() == 0.0  # round(0.2) = 0: corrected
    assert corrected.spike_count.item() == 2  # one positive and one negative event
    # a neuron that never fired cannot go negative however negative its input
    silent = IFNeuron(1.0, negative_spikes=True)
    assert sum(silent(torch.tensor([-3.0])) for _ in range(5)).item() == 0.0
    torch.manual_seed(0)
    n = IFNeuron(0.5, negative_spikes=True)
    for _ in range(50):
        n(torch.randn(100))
        assert (n.net_count >= 0).all()


def test_negative_spikes_option_of_simulate_is_restored_after():
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))).eval()
    snn = convert(q)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    plain = simulate(snn, data, T=8, progress=False)
    corrected = simulate(snn, data, T=8, negative_spikes=True, progress=False)
    assert corrected.corrections["negative_spikes"] and not plain.corrections["negative_spikes"]
    assert not any(n.negative_spikes for _, n in snn.neurons())
    assert simulate(snn, data, T=8, progress=False).accuracy == plain.accuracy


def _brute_force_sops(x, conv):
    """Count (nonzero input, weight) pairs that contribute to some output, position by position."""
    c_in, h, w = x.shape
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw), (dh, dw), g = conv.stride, conv.padding, conv.dilation, conv.groups
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_out = conv.out_channels // g
    count = 0
    for oy in range(h_out):
        for ox in range(w_out):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        count += int((x[:, iy, ix] != 0).sum()) * per_group_out
    return count


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
        dict(kernel_size=3, padding=1, groups=2),
    ],
)
def test_conv_fan_out_equals_a_brute_force_count(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, **kwargs)
    x = (torch.rand(4, 7, 6) < 0.3).float()
    fan = fan_out(conv, (4, 7, 6))
    assert fan.sum().item() == _brute_force_sops(torch.ones(4, 7, 6), conv)
    assert (x * fan).sum().item() == _brute_force_sops(x, conv)


def _spike_trains(snn, x, T):
    """Each neuron's output at every step, [T, B, ...], from a plain step-by-step run."""
    trains = {name: [] for name, _ in snn.neurons()}
    handles = [
        n.register_forward_hook(lambda m, a, out, name=name: trains[name].append(out.clone()))
        for name, n in snn.neurons()
    ]
    snn.reset()
    with torch.no_grad():
        for _ in range(T):
            snn(x)
    for h in handles:
        h.remove()
    snn.reset()
    return {name: torch.stack(v) for name, v in trains.items()}


def _synops(snn, x, T, **options):
    r = simulate(snn, [(x, torch.zeros(len(x), dtype=torch.long))], T=T, synops=True, progress=False, **options)
    return r.sops_per_sample[T], r.macs_per_sample[T]


def _trained_like(net, x, p=2):
    q = prepare(net, QuantConfig(p=p)).eval()
    init_scales(q, x)
    return convert(q)


def test_sops_count_every_spike_of_a_pool_window():
    # Eq. 20: every spike x fan-out. Conv -> neuron -> 2x2 pool -> Linear(., 3): a spike reaches the 3
    # synapses of the one pooled value it enters, however many other spikes share its window.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(16, 1, 4, 4)
    snn = _trained_like(net, x)
    (train,) = _spike_trains(snn, x, 4).values()
    sops, macs = _synops(snn, x, 4)
    assert sops == pytest.approx(3 * (train != 0).sum().item() / 16)
    # the case the old input-side count got wrong: windows with more than one spike exist
    windows = (train != 0).float().view(4, 16, 2, 2, 2, 2, 2).sum((4, 6))
    assert (windows > 1).any()
    assert macs == 4 * 2 * 16 * 9  # the conv reads the image: 2 channels x 16 positions x 9, every step


def test_flatten_first_mlp_bills_the_first_layer_as_macs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(16, 1, 4, 4)
    snn = _trained_like(net, x)
    (train,) = _spike_trains(snn, x, 4).values()
    sops, macs = _synops(snn, x, 4)
    assert macs == 4 * 16 * 8  # 512 MACs over 4 steps
    assert sops == pytest.approx(3 * (train != 0).sum().item() / 16)


class _Normalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = (x - 0.5) / 0.25  # normalisation before the first conv: still the analog input
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.bn2(self.conv2(a)) + a)  # identity shortcut
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(b, 1), 1))


def test_normalised_input_residual_net_and_bn_kept_between_layers():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 5, 5)
    snn = _trained_like(_Normalised(), x)
    trains = _spike_trains(snn, x, 3)
    a, b = trains.values()
    conv2 = nn.Conv2d(4, 4, 3, padding=1)
    expected = ((a != 0).float() * fan_out(conv2, (4, 5, 5))).sum() + 2 * (b != 0).sum()  # b -> avg -> fc(.,2)
    sops, macs = _synops(snn, x, 3)
    assert sops == pytest.approx(expected.item() / 8)
    assert macs == 3 * 4 * 25 * 27  # conv1 reads the normalised image
    # a BatchNorm that convert() cannot fold stays between a neuron and the next layer: still a spike count
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))
    x = torch.randn(16, 6)
    snn = _trained_like(net, x)
    assert any(isinstance(m, nn.BatchNorm1d) for m in snn.modules())
    (train,) = _spike_trains(snn, x, 4).values()
    assert _synops(snn, x, 4)[0] == pytest.approx(3 * (train != 0).sum().item() / 16)


def test_negative_spikes_are_events_and_pre_steps_are_counted_apart():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(20, 6)
    snn = _trained_like(net, x)
    for _, n in snn.neurons():
        n.negative_spikes = True
    trains = _spike_trains(snn, x, 6)
    for _, n in snn.neurons():
        n.negative_spikes = False
    first, second = trains.values()
    assert (first < 0).any() or (second < 0).any()
    expected = 16 * (first != 0).sum() + 3 * (second != 0).sum()
    assert _synops(snn, x, 6, negative_spikes=True)[0] == pytest.approx(expected.item() / 20)
    plain = _synops(snn, x, 4)
    data = [(x, torch.zeros(len(x), dtype=torch.long))]
    for options, passes in (({"offset_spikes": 3}, 2), ({"srp": 3}, 1)):
        r = simulate(snn, data, T=4, synops=True, progress=False, **options)
        # COS calibrates its 2 neuron layers in turn, a 3-step run each; SRP runs the network once, 3 steps
        assert r.pre_step_macs_per_sample == passes * 3 * 16 * 6
        assert r.macs_per_sample[4] == plain[1] + r.pre_step_macs_per_sample
        assert r.pre_step_sops_per_sample > 0
        assert r.energy_pj_per_sample[4] == pytest.approx(
            4.6 * r.macs_per_sample[4] + 0.9 * r.sops_per_sample[4]
        ) and r.pre_step_energy_pj_per_sample == pytest.approx(
            4.6 * r.pre_step_macs_per_sample + 0.9 * r.pre_step_sops_per_sample
        )
    # SRP's pre-run, transcribed: the spikes of a plain 3-step run, each times its fan-out
    srp_pre = _synops(snn, x, 3)[0]
    assert simulate(snn, data, T=4, synops=True, progress=False, srp=3).pre_step_sops_per_sample == pytest.approx(
        srp_pre
    )


def test_energy_accounting_in_simulate():
    torch.manual_seed(0)
    q = prepare(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))).eval()
    snn = convert(q)
    x = torch.randn(5, 1, 4, 4)
    r = simulate(
        snn,
        [(x, torch.zeros(5, dtype=torch.long))],
        T=[1, 4],
        synops=True,
        progress=False,
        energy=EnergyModel(e_mac_pj=4.6, e_ac_pj=0.9),
    )
    conv_macs = 4 * 16 * 9  # 4 output channels x 16 positions x 9 inputs each (padded ones included)
    assert r.macs_per_sample == {1: conv_macs, 4: 4 * conv_macs}
    assert r.ann_macs_per_sample == conv_macs + 64 * 3
    # SOPs of the linear layer: each spike of the 64 neurons reaches 3 synapses
    assert r.sops_per_sample[4] == pytest.approx(3 * r.spikes_per_sample[4])
    assert r.energy_pj_per_sample[4] == pytest.approx(4 * conv_macs * 4.6 + r.sops_per_sample[4] * 0.9)
    assert r.ann_energy_pj_per_sample == pytest.approx((conv_macs + 192) * 4.6)


def _two_neuron_net(w2, b2):
    """x=1 -> A (input 0.25/step: fires at steps 2, 6, ...) -> B (input w2*spike_A + b2). Thresholds 1."""
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(0.25), net[0].bias.zero_(), net[2].weight.fill_(w2), net[2].bias.fill_(b2)
    q = prepare(net, QuantConfig(p=1)).eval()
    for _, layer in quantizers(q):
        layer.scale.data.fill_(1.0)
    return convert(q)


def _count(snn, steps):
    snn.reset()
    return sum(snn(torch.ones(1, 1)) for _ in range(steps)).item()


@pytest.mark.parametrize(
    "w2, b2, ideal",
    [
        (-1.2, 0.6, 0.0),  # B fires at step 1, then gets -1.2: one too many
        (2.0, 0.0, 2.0),
    ],
)  # B gets 2 at step 2 but can fire once: one too few
def test_offset_spikes_fix_hand_built_over_and_under_firing(w2, b2, ideal):
    from noiseadaptor.snn.corrections import calibrate_offsets

    snn = _two_neuron_net(w2, b2)
    # over two steps B's ideal count is round(0.5 + total input) clipped to [0, 2]
    assert _count(snn, 2) == ideal + (1 if ideal == 0 else -1)
    calibrate_offsets(snn, torch.ones(1, 1), pre_steps=2)
    assert _count(snn, 2) == ideal
    a, b = (n for _, n in snn.neurons())
    assert a.initial_membrane.item() == 0.5  # A has no offset: left alone


def test_offset_spikes_in_simulate_do_not_leak_between_runs():
    snn = _two_neuron_net(-1.2, 0.6)
    data = [(torch.ones(1, 1), torch.zeros(1, dtype=torch.long))]
    r = simulate(snn, data, T=2, offset_spikes=2, progress=False)
    assert r.corrections == {"negative_spikes": False, "offset_spikes_pre_steps": 2, "srp_pre_steps": 0, "pre_steps": 2,
                             "pre_steps_counted_in_T": False}  # fmt: skip
    assert r.spikes_per_sample[2] == 1  # A's one spike; B silent after calibration
    assert all(n.initial_membrane.numel() == 1 and n.initial_membrane.item() == 0.5 for _, n in snn.neurons())
    with pytest.raises(ValueError, match="offset_spikes"):
        simulate(snn, data, T=2, offset_spikes=-1)


def test_sops_through_a_1d_pool_and_a_mismatched_reference_leaves_nothing_behind():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(16, 1, 8)
    snn = _trained_like(net, x)
    (train,) = _spike_trains(snn, x, 4).values()
    assert _synops(snn, x, 4)[0] == pytest.approx(3 * (train != 0).sum().item() / 16)
    other = prepare(nn.Sequential(nn.Linear(8, 2), nn.Identity(), nn.ReLU()), QuantConfig(p=2))  # neuron "2"
    with pytest.raises(ValueError, match="reference has no quantizer"):
        simulate(snn, [(x, torch.zeros(16, dtype=torch.long))], T=2, progress=False, negative_spikes=True,
                 synops=True, reference=other)  # fmt: skip
    assert not any(n.negative_spikes or n._forward_hooks for _, n in snn.neurons())


def test_the_energy_table_counts_both_ways():
    # ours (Eq. 20): analog first-layer MACs at 4.6 pJ plus SOPs at 0.9 pJ; the dual-phase paper's Table 4:
    # SOPs * 0.9 pJ alone (its 140.5 uJ = 156.1e6 SOPs * 0.9 pJ); E_ANN = MACs * 4.6 pJ either way
    from noiseadaptor.io.report import energy_table

    row = {"energy_pj_per_sample": {1: 100 * 4.6 + 50 * 0.9}, "sops_per_sample": {1: 50.0},
           "ann_energy_pj_per_sample": 1000 * 4.6}  # fmt: skip
    ours, paper = (energy_table({"na": row}, [1], sops_only=s).splitlines()[-1].split() for s in (False, True))
    assert float(ours[-1]) == round((460 + 45) / 4600, 3) and float(paper[-1]) == round(45 / 4600, 3)
