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
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..ann.preparation import quantizers
from .neurons import IFNeuron, SpikingNetwork

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


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
        _fold_batchnorm(net)
    return SpikingNetwork(net).eval()


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    calls = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BATCH_NORMS):
            continue
        prev = node.args[0]
        if not (
            isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1 and calls[prev.target] == 1
        ):
            continue
        layer, bn = gm.get_submodule(prev.target), gm.get_submodule(node.target)
        if isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed:
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        gm.set_submodule(prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()
