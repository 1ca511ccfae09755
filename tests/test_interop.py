"""The converted network in SpikingJelly, snnTorch, sinabs and Norse (noiseadaptor.interop): identical spikes at
every layer and step, identical outputs, and identical accuracy at every T against simulate()."""

import warnings

import pytest
import torch
from nets import residual_net, spiking, vgg_net
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import interop, simulate

SIMULATORS = {"spikingjelly": "spikingjelly", "snntorch": "snntorch", "sinabs": "sinabs", "norse": "norse"}
T = 12


def _recorded(modules, scale):
    """Hooks that record each neuron's 0/1 spikes per step: {name: [step tensors]}."""
    spikes = {}
    for name, m in modules:
        m.register_forward_hook(lambda mod, i, out, key=name: spikes.setdefault(key, []).append(out / scale(mod)))
    return spikes


@pytest.mark.parametrize("make", [vgg_net, residual_net])
@pytest.mark.parametrize("simulator", list(SIMULATORS))
def test_the_same_spikes_outputs_and_accuracy_in_another_simulator(simulator, make):
    pytest.importorskip(SIMULATORS[simulator])
    torch.manual_seed(1)
    x, labels = torch.randn(24, 1, 8, 8), torch.randint(0, 3, (24,))
    snn = spiking(make(), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the simulators' own deprecation chatter
        foreign = getattr(interop, f"to_{simulator}")(snn)
    ours_spikes = _recorded(snn.neurons(), lambda m: m.threshold)
    theirs_spikes = _recorded(foreign.neurons(), lambda m: m.threshold)
    snn.reset()
    foreign.reset()
    total = 0
    theirs_accuracy = []
    for _ in range(T):
        ours, theirs = snn(x), foreign(x)
        assert torch.equal(ours, theirs)
        total = total + theirs
        theirs_accuracy.append((total.argmax(1) == labels).sum().item() / len(labels))
    fired = 0
    for name in ours_spikes:
        a, b = torch.stack(ours_spikes[name]), torch.stack(theirs_spikes[name])
        assert torch.equal(a, b), name
        fired += 0 < a.mean() < 1
    assert len(ours_spikes) == len(theirs_spikes) == len(snn.neurons()) and fired == len(ours_spikes)
    # the accuracy a user of that simulator measures, at every T, is what simulate() reports
    result = simulate(snn, DataLoader(TensorDataset(x, labels), batch_size=24), T=T, progress=False,
                      steps_per_call=1, synops=False)  # fmt: skip
    assert [result.accuracy[t] for t in range(1, T + 1)] == pytest.approx(theirs_accuracy, abs=0)
    foreign.reset()  # a second sample starts from the pre-charge again
    assert torch.equal(foreign(x), (snn.reset(), snn(x))[1])


@pytest.mark.parametrize("simulator", list(SIMULATORS))
def test_a_membrane_exactly_at_threshold_fires_in_every_simulator(simulator):
    # the tie is where conventions part (snnTorch and Norse fire at u > theta natively); here u = theta exactly
    pytest.importorskip(SIMULATORS[simulator])
    from noiseadaptor.snn.neurons import IFNeuron, SpikingNetwork

    snn = SpikingNetwork(torch.nn.Sequential(IFNeuron(0.75, initial_membrane=0.5)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        foreign = getattr(interop, f"to_{simulator}")(snn)
    x = torch.tensor([[0.375, 0.25, 0.75]])  # 0.375 + 0.375 = 0.75 = theta (exact in binary)
    for _ in range(3):
        ours, theirs = snn(x), foreign(x)
        assert torch.equal(ours, theirs)
    assert ours[0, 0] == 0.75


def test_a_checkpoint_loads_into_a_simulator_and_refusals_are_one_line(tmp_path):
    pytest.importorskip("spikingjelly")
    from noiseadaptor import QuantConfig, prepare
    from noiseadaptor.ann.models import create_model
    from noiseadaptor.io.checkpoint import save_checkpoint

    cfg = {"dataset": "digits", "model": "small-cnn", "num_classes": 10, "in_channels": 1, "image_size": 8,
           "method": "na", "p": 2}  # fmt: skip
    save_checkpoint(tmp_path / "na.pt", prepare(create_model("small-cnn", 10, 1), QuantConfig(p=2)), epoch=1,
                    config=cfg)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = interop.to_spikingjelly(tmp_path / "na.pt")
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10) and len(net.neurons()) == 3
    with pytest.raises(TypeError, match="SpikingNetwork"):
        interop.to_spikingjelly(torch.nn.Linear(2, 2))
