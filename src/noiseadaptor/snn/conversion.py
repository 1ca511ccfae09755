"""convert(qmodel): a quantized ANN -> a spiking network with the same weights (paper Eq. 4).

Every QuantReLU becomes an IFNeuron with threshold p*s and a half-threshold initial membrane; the
input is analog (the same image at every step, into the first layer's weights). Residual additions
stay before the neuron they feed, as in the ANN graph.

BatchNorm is folded into the conv/linear layer right before it (exact in eval mode, one layer fewer
per step); a BatchNorm with no such layer is kept and applied at every step, which is the same affine
map and equally exact.
"""

from __future__ import annotations

import copy

from torch import fx, nn

from ..ann.preparation import quantizers
from . import graph
from .neurons import IFNeuron, SpikingNetwork


def convert(qmodel: nn.Module, fold_batchnorm: bool = True) -> SpikingNetwork:
    """Return a `SpikingNetwork` copy of a prepared (and trained) model; `qmodel` is left untouched."""
    if not isinstance(qmodel, nn.Module) or not quantizers(qmodel):
        raise TypeError(
            "convert() expects a model returned by noiseadaptor.prepare() (it has no QuantReLU "
            "layers); call prepare(model, QuantConfig(...)) and train it first"
        )
    net = copy.deepcopy(qmodel).eval()
    for name, q in quantizers(net):
        net.set_submodule(name, IFNeuron(q.threshold.detach()))
    if fold_batchnorm and isinstance(net, fx.GraphModule):
        graph.fold_batchnorm(net)
    return SpikingNetwork(net).eval()
