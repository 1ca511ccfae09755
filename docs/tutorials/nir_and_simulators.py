"""One network, five simulators: export to NIR, and the same spikes in SpikingJelly, snnTorch, Norse and sinabs.

A converted network is written as a NIR graph (`export_nir`); SpikingJelly 2.0 reads that file and runs it
step for step as `simulate` does, once its IF nodes are told what the file's metadata says (reset by
subtraction, the membrane pre-charged to half the threshold). The NIR readers of snnTorch, Norse and sinabs
take an `IF` node as the spec's hard reset from 0, another network; `noiseadaptor.interop` gives them the
network in their own neuron classes, set up as ours. Every simulator runs the same 16 test images for
T steps, and every layer's spikes are compared with ours at every step.

    pip install "noiseadaptor[interop]" sinabs   # the simulators (sinabs: see docs/guide/export.md)
    python docs/tutorials/nir_and_simulators.py          # about 10 s on a 2-core laptop CPU
    python docs/tutorials/nir_and_simulators.py --toy    # seconds (what the tests run)
"""

import argparse
import importlib.util
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import noiseadaptor as na
from noiseadaptor import interop
from noiseadaptor.ann.models import create_model
from noiseadaptor.data import get_dataset
from noiseadaptor.io.export import export_nir

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--toy", action="store_true", help="one float epoch, to check it runs")
parser.add_argument("--out", type=Path, default=Path("tutorial-nir"), help="where net.nir goes")
args = parser.parse_args()
T = 8
torch.manual_seed(0)
warnings.simplefilter("ignore")  # the simulators' deprecation chatter, and export's note on IF semantics

digits = get_dataset("digits")
train_loader = DataLoader(digits.train, batch_size=64, shuffle=True)
float_model = create_model("small-cnn", num_classes=10, in_channels=1)
na.fit(float_model, train_loader, epochs=1 if args.toy else 10, lr=0.05, progress=False)
qmodel = na.prepare(float_model, na.QuantConfig(p=2))
na.init_scales(qmodel, next(iter(train_loader))[0])
snn = na.convert(qmodel)
x = torch.stack([digits.test[i][0] for i in range(16)])

args.out.mkdir(parents=True, exist_ok=True)
graph = export_nir(snn, x, args.out / "net.nir")
neurons = sum(type(node).__name__ == "IF" for node in graph.nodes.values())
print(f"{args.out / 'net.nir'}: {len(graph.nodes)} NIR nodes, {neurons} IF")


def spikes_per_step(neurons, step) -> dict[int, torch.Tensor]:
    """Every neuron layer's 0/1 spikes over T steps, [T, batch, ...], through forward hooks: `neurons` lists
    (module, read), `read` turning the module's output into 0/1 spikes."""
    spikes = {}
    for i, (module, read) in enumerate(neurons):
        module.register_forward_hook(lambda m, a, out, i=i, read=read: spikes.setdefault(i, []).append(read(out)))
    with torch.no_grad():
        for _ in range(T):
            step(x)
    return {i: torch.stack(v) for i, v in spikes.items()}


ours = spikes_per_step([(m, lambda out, m=m: out / m.threshold) for _, m in snn.neurons()], snn)  # spike * θ
snn.reset()
total = sum(int(s.sum()) for s in ours.values())
print(f"ours: {len(ours)} neuron layers, {total} spikes over {T} steps and 16 images")


def from_nir_file():
    """SpikingJelly reads the NIR file; its IF nodes get the metadata's reset and pre-charge."""
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net = import_from_nir(args.out / "net.nir", dt=1.0)
    layers = []
    for name, m in net.named_modules():
        if isinstance(m, neuron.IFNode):
            node = graph.nodes[name.split(".")[0]]
            m.v_reset = None  # reset by subtraction
            m.v = torch.from_numpy(node.metadata["initial_membrane"]).expand(len(x), *node.v_threshold.shape).clone()
            layers.append((net.get_submodule(name.split(".")[0]), lambda out: out[0]))  # the node's (spikes, state)
    state = {}

    def step(x):
        _, state["s"] = net(x, state.get("s"))

    return layers, step


def through_interop(simulator: str):
    """The network in the simulator's own neuron class (noiseadaptor.interop)."""
    net = getattr(interop, f"to_{simulator}")(snn)
    net.reset()
    return [(m, lambda out, m=m: out / m.threshold) for _, m in net.neurons()], net


print(f"\n{'simulator':<34}{'layers':>7}{'spikes':>8}   same spikes at every layer and step")
for label, package, make in (
    ("SpikingJelly (the NIR file)", "spikingjelly", from_nir_file),
    ("SpikingJelly (interop)", "spikingjelly", lambda: through_interop("spikingjelly")),
    ("snnTorch (interop)", "snntorch", lambda: through_interop("snntorch")),
    ("Norse (interop)", "norse", lambda: through_interop("norse")),
    ("sinabs (interop)", "sinabs", lambda: through_interop("sinabs")),
):
    if importlib.util.find_spec(package) is None:
        print(f"{label:<34}  not installed: pip install {package}")
        continue
    layers, step = make()
    theirs = spikes_per_step(layers, step)
    same = len(theirs) == len(ours) and all(torch.equal(ours[i], theirs[i]) for i in ours)
    print(f"{label:<34}{len(theirs):>7}{sum(int(s.sum()) for s in theirs.values()):>8}   {'yes' if same else 'NO'}")
