import dataclasses
import math

import pytest
import torch
from torch import nn

from noiseadaptor import evaluate, fit
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import digits
from noiseadaptor.runconfig import RunConfig
from noiseadaptor.snn.lif import DirectConfig, LIFNeuron, to_direct_snn


def test_gradient_flows_only_through_the_smooth_part():
    torch.manual_seed(0)
    neuron = LIFNeuron(DirectConfig(alpha=2.0, spike_noise_p=0.5)).train()
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
    asgl = LIFNeuron(DirectConfig(spike_noise_p=0.3)).train()
    noisy = asgl.spike(x)
    assert not torch.equal(noisy, heaviside) and ((noisy == heaviside) | ((noisy > 0) & (noisy < 1))).any()
    asgl.eval()
    assert torch.equal(asgl.spike(x), heaviside) and torch.equal(asgl.spike(x), asgl.spike(x))
    assert not sg.alpha.requires_grad and asgl.alpha.requires_grad


def test_lif_dynamics_hard_and_soft_reset():
    current = torch.tensor([0.6, 0.6, 0.6, 0.6]).reshape(4, 1)  # T=4, one neuron, tau=2: gamma 0.5
    hard = LIFNeuron(DirectConfig(time_steps=4, tau=2.0, reset="hard")).eval()
    # u: 0.6, 0.9, 1.05 (fires), then reset to 0: 0.6
    assert hard(current).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    soft = LIFNeuron(DirectConfig(time_steps=4, tau=2.0, reset="soft")).eval()
    # u: 0.6, 0.9, 1.05 (fires), 0.5*(1.05-1) + 0.6 = 0.625
    assert soft(current).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_direct_training_learns_digits_and_keeps_the_float_model():
    torch.manual_seed(0)
    train, test = digits().loaders(64, eval_batch_size=512)
    float_model = create_model("small-cnn", 10, 1, width=8)
    snn = to_direct_snn(float_model, DirectConfig(time_steps=2, alpha=1.0))
    assert len(snn.neurons()) == 3 and any(isinstance(m, nn.ReLU) for m in float_model.modules())
    widths = []
    fit(
        snn,
        train,
        3,
        lr=0.05,
        progress=False,
        on_epoch_end=lambda epoch, row: widths.append([n.alpha.item() for _, n in snn.neurons()]),
    )
    assert evaluate(snn, test) > 0.5
    assert widths[-1] != [1.0, 1.0, 1.0]  # learned


def test_noise_probability_schedule_follows_the_paper_and_fit():
    """Appendix A.3: p <- 1 - (1 - p) * zeta at each milestone; fit's epochs see it (0-based)."""
    config = DirectConfig(spike_noise_p=0.6, noise_decay=0.8, noise_milestones=[90, 210, 270, 285])
    assert config.noise_milestones == (90, 210, 270, 285)
    expected = {0: 0.6, 89: 0.6, 90: 0.68, 209: 0.68, 210: 0.744, 285: 1 - 0.4 * 0.8**4, 299: 1 - 0.4 * 0.8**4}
    for epoch, p in expected.items():
        assert config.spike_noise_at(epoch) == pytest.approx(p)
    assert DirectConfig.surrogate_gradient(noise_decay=0.5, noise_milestones=(1,)).spike_noise_at(5) == 1.0

    torch.manual_seed(0)
    train, _ = digits().loaders(256)
    snn = to_direct_snn(
        create_model("small-cnn", 10, 1, width=4),
        DirectConfig(time_steps=1, spike_noise_p=0.5, noise_decay=0.5, noise_milestones=(1, 2)),
    )
    seen = []
    fit(
        snn,
        train,
        3,
        lr=0.05,
        progress=False,
        on_epoch_start=snn.start_epoch,
        on_epoch_end=lambda epoch, row: seen.append([n.spike_noise_p for _, n in snn.neurons()]),
    )
    assert seen == [[0.5] * 3, [0.75] * 3, [0.875] * 3]


def test_bad_direct_config():
    with pytest.raises(ValueError, match="time_steps must be"):
        DirectConfig(time_steps=0)
    with pytest.raises(TypeError, match="'T'"):  # the old names served their one release
        DirectConfig(T=3)
    # a frozen config's copy with one change keeps that change (the InitVar aliases silently undid it)
    changed = dataclasses.replace(DirectConfig(), time_steps=3, spike_noise_p=0.9)
    assert (changed.time_steps, changed.spike_noise_p) == (3, 0.9)
    with pytest.raises(ValueError, match="probability"):
        DirectConfig(spike_noise_p=1.5)
    with pytest.raises(ValueError, match="width"):
        DirectConfig(alpha=0)
    with pytest.raises(ValueError, match="threshold must be positive"):
        DirectConfig(threshold=0)
    with pytest.raises(ValueError, match="zeta"):
        DirectConfig(noise_decay=1.5)
    with pytest.raises(ValueError, match="milestones"):
        DirectConfig(noise_milestones=(20, 10))


def _asgl_net(width=1.0):
    torch.manual_seed(0)
    return to_direct_snn(
        create_model("small-cnn", num_classes=10, in_channels=1, width=4), DirectConfig.asgl(time_steps=2, alpha=width)
    )


def test_weight_decay_never_touches_the_learned_width():
    # the case: one step with weight_decay=900, lr=1e-3 took the width from 1.0 to 0.10
    from noiseadaptor.training import OptimizerConfig

    train, _ = digits().loaders(16, seed=0)
    batch = [next(iter(train))]
    for optimizer in (None, OptimizerConfig.asgl()):
        snn = _asgl_net()
        fit(snn, batch, 1, lr=1e-3, weight_decay=900.0, optimizer=optimizer, progress=False)
        widths = [n.alpha.item() for _, n in snn.neurons()]
        assert all(0.95 < w < 1.05 for w in widths), widths  # moved by the loss only


def test_asgl_optimizer_groups_are_the_authors():
    from noiseadaptor.training.optim import OptimizerConfig, build_optimizer, parameter_roles

    snn = _asgl_net()
    roles = parameter_roles(snn)
    assert {r for r, _ in roles} == {"weight", "bias", "norm", "width"}
    assert [p for _, p in roles] == list(snn.parameters())  # model order: optimizer state stays by index
    optimizer, _ = build_optimizer(snn, OptimizerConfig.asgl(lr=0.1, weight_decay=5e-4), epochs=3)
    decay = {id(p): g["weight_decay"] for g in optimizer.main.param_groups for p in g["params"]}
    for role, p in roles:
        if role == "width":
            assert id(p) not in decay
        else:
            assert decay[id(p)] == (5e-4 if role == "weight" else 0.0), role
    assert isinstance(optimizer.width, torch.optim.Adam)
    assert optimizer.width.param_groups[0]["lr"] == 3e-4 and optimizer.width.param_groups[0]["weight_decay"] == 0
    with pytest.raises(ValueError, match="roles"):
        OptimizerConfig(no_decay=("everything",))


def _interrupt():
    raise KeyboardInterrupt


def test_two_optimizers_resume_from_a_checkpoint(tmp_path):
    from noiseadaptor.training import OptimizerConfig

    train, _ = digits().loaders(64, seed=0)
    config = OptimizerConfig.asgl(lr=0.05)
    straight = _asgl_net()
    torch.manual_seed(1)
    fit(straight, train, 2, optimizer=config, progress=False)
    ckpt = tmp_path / "asgl.pt"
    first = _asgl_net()
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):  # killed at the start of the second epoch
        fit(
            first,
            train,
            2,
            optimizer=config,
            progress=False,
            checkpoint=ckpt,
            on_epoch_start=lambda epoch: _interrupt() if epoch == 1 else None,
        )
    resumed = _asgl_net()
    fit(resumed, train, 2, optimizer=config, progress=False, checkpoint=ckpt, resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_one_width_convention_and_the_papers_steepness():
    from noiseadaptor.snn import surrogate

    x = torch.linspace(-3, 3, 601)
    # the paper's tanh variant 1/2 tanh(alpha x) + 1/2 with alpha = 2.5 (ASGL Table 5, A.6): slope 1.25 at 0
    neuron = LIFNeuron(DirectConfig.asgl(surrogate="sigmoid", steepness=2.5))
    assert neuron.alpha.item() == pytest.approx(0.8)
    assert torch.allclose(neuron.smooth(x), 0.5 * torch.tanh(2.5 * x) + 0.5, atol=1e-6)
    # the authors' code sigmoid(x/w) is the same shape at width 4w; every shape has slope 1/width at 0
    assert torch.allclose(surrogate.smooth(x, "sigmoid", 4 * 0.3), torch.sigmoid(x / 0.3), atol=1e-6)
    for shape in surrogate.SHAPES:  # Dspike's width is its support's (Table 12), the one exception
        probe = torch.zeros(1, requires_grad=True)
        surrogate.spike(probe, shape, 0.5).sum().backward()
        b = surrogate.DSPIKE_TEMPERATURE
        assert probe.grad.item() == pytest.approx(2.0 if shape != "dspike" else b / (2 * 0.5 * math.tanh(b / 2)))
    with pytest.raises(ValueError, match="steepness"):
        DirectConfig.asgl(surrogate="rectangular", steepness=2.5)
    with pytest.raises(ValueError, match="surrogate"):
        DirectConfig.asgl(surrogate="triangle")


def test_the_reconstruction_autoencoder_trains_with_a_regression_criterion():
    # ASGL Table 5's network (784-128-64-32-64-128-784, 8 steps, tanh surrogate) on synthetic images: fit
    # with criterion=F.mse_loss records the loss (no accuracy), and ASGL learns every layer's width
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from noiseadaptor.ann.models import mlp_autoencoder
    from noiseadaptor.training import OptimizerConfig

    torch.manual_seed(0)
    images = torch.rand(32, 1, 28, 28)
    data = DataLoader(TensorDataset(images, images.flatten(1)), batch_size=16)
    config = DirectConfig.asgl(time_steps=8, surrogate="sigmoid", steepness=2.5)
    snn = to_direct_snn(mlp_autoencoder(), config)
    assert snn(images[:3]).shape == (3, 784) and len(snn.neurons()) == 5  # BatchNorm1d before each
    history = fit(snn, data, 2, lr=1e-3, optimizer=OptimizerConfig(kind="adam", weight_decay=0.0),
                  criterion=lambda out, target: F.mse_loss(torch.sigmoid(out), target), progress=False)  # fmt: skip
    assert set(history[-1]) == {"epoch", "lr", "train_loss"} and history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(n.alpha.item() != pytest.approx(0.8) for _, n in snn.neurons())  # width 2 / 2.5, then learned


def test_the_noisy_network_and_its_embedded_snn_cosine_similarity_against_a_hand_count():
    from noiseadaptor.snn.lif import noisy_network, noisy_similarity

    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    data = [(x, y)]
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2))
    same = to_direct_snn(net, DirectConfig.asgl(time_steps=3, spike_noise_p=1.0))  # the noisy net is the SNN
    result = noisy_similarity(same, data)
    assert result["mean"] == pytest.approx(1.0) and result["std"] == pytest.approx(0.0, abs=1e-7)
    assert result["snn_accuracy"] == result["noisy_accuracy"] and result["n"] == 6
    analog = to_direct_snn(net, DirectConfig.asgl(time_steps=3, spike_noise_p=0.0))  # every element analog
    layers = {}
    for k, n in analog.neurons():
        n.register_forward_hook(lambda m, i, o, k=k: layers.setdefault(k, []).append(o.reshape(3, 6, -1)))
    analog.eval()(x)
    with noisy_network(analog):
        analog(x)
    by_hand = []
    for i in range(6):  # per sample: each layer's cosine over all steps, then the mean over layers
        cos = []
        for pure, noisy in layers.values():
            a, b = pure[:, i].detach().flatten(), noisy[:, i].detach().flatten()
            cos.append(1.0 if not a.any() and not b.any() else float(a @ b / (a.norm() * b.norm() + 1e-8)))
        by_hand.append(sum(cos) / len(cos))
    analog.train()
    before = torch.random.get_rng_state()
    result = noisy_similarity(analog, data)
    assert torch.equal(torch.random.get_rng_state(), before)  # a training run's noise stream is untouched
    assert result["mean"] == pytest.approx(sum(by_hand) / 6, abs=1e-5) and 0 < result["mean"] < 1
    assert analog.training  # left as it was found


def test_dspike_against_its_formula():
    # Dspike (Li et al. 2021), transcribed: on |x| <= a/2, dH/dx = b / (2 a tanh(b/2)) * sech^2(b x / a), with
    # H(-a/2) = 0 and H(a/2) = 1; zero gradient outside; the spike itself is the Heaviside
    from noiseadaptor.snn import surrogate

    a, b = 0.8, surrogate.DSPIKE_TEMPERATURE
    x = torch.linspace(-0.6, 0.6, 25, requires_grad=True)
    s = surrogate.spike(x, "dspike", a)
    assert torch.equal(s.detach(), (x >= 0).float())
    s.sum().backward()
    inside = x.detach().abs() <= a / 2
    expected = b / (2 * a * math.tanh(b / 2)) / torch.cosh(b * x.detach() / a) ** 2 * inside
    assert torch.allclose(x.grad, expected, atol=1e-5)
    edges = surrogate.smooth(torch.tensor([-a / 2, 0.0, a / 2, 1.0]), "dspike", a)
    assert torch.allclose(edges, torch.tensor([0.0, 0.5, 1.0, 1.0]), atol=1e-6)
    neuron = LIFNeuron(DirectConfig.asgl(surrogate="dspike", alpha=a))  # a learned width, as for the others
    neuron.train()
    neuron(torch.randn(4 * 3, 5)).sum().backward()
    assert neuron.alpha.grad is not None and neuron.alpha.grad != 0


@pytest.mark.parametrize(
    "name, channels, size, static",
    [("cifarnet", 3, 32, True), ("vggsnn", 2, 48, False), ("vgg13-snn", 3, 64, True), ("gesture-net", 2, 32, False)],
)
def test_the_asgl_architectures_take_one_training_step(name, channels, size, static):
    # ASGL's CifarNet (Table 1), VGGSNN on 48x48 event frames (Table 2), VGG-13 on 64x64 Tiny-ImageNet (Table 8)
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    snn = to_direct_snn(create_model(name, 10, channels), DirectConfig.asgl(time_steps=2), static_input=static)
    x = torch.rand(2, channels, size, size) if static else torch.rand(2, 2, channels, size, size)  # [B, T, ...]
    before = [p.detach().clone() for p in snn.parameters()]
    history = fit(snn, DataLoader(TensorDataset(x, torch.tensor([1, 7])), batch_size=2), 1, progress=False)
    assert snn(x).shape == (2, 10) and history[0]["train_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, snn.parameters()))


def test_the_cyclic_cosine_schedule_restarts(small_cnn):
    # ASGL A.3's "cyclic cosine annealing": restart_epochs=N restarts the cosine every N epochs
    from noiseadaptor.training import OptimizerConfig, build_optimizer

    optimizer, schedule = build_optimizer(small_cnn(), OptimizerConfig(kind="adam", lr=0.1, restart_epochs=2), 6)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    assert lrs == pytest.approx([0.1, 0.05, 0.1, 0.05, 0.1, 0.05])
    with pytest.raises(ValueError, match="restart_epochs"):
        OptimizerConfig(restart_epochs=-1)


def test_the_recurrent_shd_network_carries_its_spikes_to_the_next_step():
    # ASGL A.5: the hidden layer's input at step t is W x[t] + V s[t-1]; checked against a hand-written loop
    from noiseadaptor.ann.models import create_model

    torch.manual_seed(0)
    config = DirectConfig.surrogate_gradient(time_steps=4, threshold=1.0, tau=2.0)
    ann = create_model("shd-rsnn", 20, 1)
    x = 20 * torch.rand(3, 4, 700) * (torch.rand(3, 4, 700) < 0.05)  # [B, T, channels]: sparse event counts
    with torch.no_grad():
        ann.recurrent.weight.mul_(20)  # strong enough that the recurrence changes who fires
    snn = to_direct_snn(ann, config, static_input=False).eval()
    W, b, V = ann.fc.weight, ann.fc.bias, ann.recurrent.weight
    u = s = torch.zeros(3, 240)
    readout = []
    for t in range(4):
        u = 0.5 * u * (1 - s) + x[:, t] @ W.T + b + s @ V.T  # hard reset, leak 1 - 1/tau
        s = (u >= 1.0).float()
        readout.append(ann.out(s))
    assert 0 < s.mean() < 1
    assert torch.allclose(snn(x), torch.stack(readout).mean(0), atol=1e-5)
    neuron = snn.neurons()[0][1]
    with torch.no_grad():
        neuron.recurrent.weight.zero_()  # no recurrence: a different network
    assert not torch.allclose(snn(x), torch.stack(readout).mean(0), atol=1e-5)
    assert any(n.startswith("net.2.recurrent") for n, _ in snn.named_parameters())  # V is trained and saved


def test_the_current_based_lif_against_eq_18():
    # ASGL A.2 (Eq. 18), transcribed, with e[t] = beta_m e[t-1] + theta s[t-1] (the printed m[t-1] read as e)
    config = DirectConfig.surrogate_gradient(time_steps=12, neuron="clif", tau=4.0, tau_syn=2.0, threshold=0.6)
    neuron = LIFNeuron(config).eval()
    torch.manual_seed(0)
    x = torch.rand(12, 3, 5) * 0.8
    beta_m, beta_v = 0.75, 0.5
    u0 = 1 / max(beta_m**k - beta_v**k for k in range(1, 200))
    m = v = e = s = torch.zeros(3, 5)
    expected = []
    for t in range(12):
        c = u0 * x[t]
        m, v, e = beta_m * m + c, beta_v * v + c, beta_m * e + 0.6 * s
        s = (m - v - e >= 0.6).float()
        expected.append(s)
    out = neuron(x.reshape(36, 5)).reshape(12, 3, 5)
    assert torch.equal(out, torch.stack(expected)) and 0 < out.mean() < 1
    impulse = torch.zeros(12, 1)
    impulse[0] = 1.0  # one unit of input current at t = 0: the membrane peaks at 1 (u0 normalises the kernel)
    fired = [
        LIFNeuron(DirectConfig.surrogate_gradient(time_steps=12, neuron="clif", tau=4.0, tau_syn=2.0, threshold=theta))
        .eval()(impulse)
        .sum()
        .item()
        for theta in (1.001, 0.99)
    ]
    assert fired == [0, 1]
    with pytest.raises(ValueError, match="tau_syn"):
        DirectConfig.asgl(neuron="clif", tau=2.0, tau_syn=2.0)


@pytest.mark.parametrize("tau, tau_syn", [(2.0, 4.0), (2.0, 1000.0), (4.0, 4.0), (5.0, 0.5), (True, 2.0)])
def test_the_current_based_lif_refuses_time_constants_without_a_positive_kernel(tau, tau_syn):
    # tau <= tau_syn made u0 a division by zero (tau 2, tau_syn 4) or a large negative gain (tau_syn 1000)
    with pytest.raises(ValueError, match=r"tau"):
        DirectConfig.asgl(neuron="clif", tau=tau, tau_syn=tau_syn)


def test_the_current_based_lif_defaults_are_guetigs_and_its_kernel_peaks_at_one():
    config = DirectConfig.asgl(neuron="clif")
    assert (config.tau, config.tau_syn) == (20.0, 5.0)  # Guetig 2016: tau_mem 20 ms, tau_syn 5 ms, 1-ms steps
    assert DirectConfig.asgl().tau == 2.0 and DirectConfig.asgl().tau_syn is None  # plain LIF unchanged
    neuron = LIFNeuron(config)
    kernel = [0.95**k - 0.8**k for k in range(1, 400)]  # beta_m = 1 - 1/20, beta_v = 1 - 1/5
    assert neuron.u0 == pytest.approx(1 / max(kernel)) and neuron.u0 > 0
    run = RunConfig(method="sg", neuron="clif", model="mlp", dataset="mnist")
    direct = run.method_info.direct(run)
    assert (direct.tau, direct.tau_syn) == (20.0, 5.0)


def test_accuracy_per_step_is_what_a_run_of_t_steps_reads_out():
    """Step t of a T-step run depends on steps 1..t alone: the accuracy read after t steps equals that of the
    same network run for t steps (the per-step column `evaluate` prints for a directly trained SNN)."""
    import copy

    from noiseadaptor.snn.lif import accuracy_per_step

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))  # fmt: skip
    snn = to_direct_snn(net, DirectConfig.asgl(time_steps=4, threshold=0.1))
    data = [(torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,))) for _ in range(2)]
    per_step = accuracy_per_step(snn, data)
    for t in (1, 2, 4):
        short = copy.deepcopy(snn)
        short.time_steps = t
        with torch.no_grad():
            hits = sum((short.eval()(x).argmax(1) == y).sum().item() for x, y in data)
        assert per_step[t] == hits / 40
