"""The FX graph of a spiking network, as conversion, the NIR export and integer deployment read it: traced
with the neurons (IF, LIF) as leaves, BatchNorm folded into the layer before it, the per-sample shape of
every value, and the fixed geometry of its average pools."""

from __future__ import annotations

import operator

import torch
from torch import Tensor, fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .lif import LIFNeuron
from .neurons import IFNeuron

ADDS = {operator.add, operator.iadd, torch.add}
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
NEURONS = (IFNeuron, LIFNeuron)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, NEURONS) or super().is_leaf_module(m, name)


def traced(net: nn.Module) -> fx.GraphModule:
    """`net` as an FX graph module (itself when it is one already; it then shares its modules)."""
    return net if isinstance(net, fx.GraphModule) else fx.GraphModule(net, _Tracer().trace(net))


def fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every BatchNorm (in eval mode) into the conv/linear layer right before it, in place: exact up to
    float rounding, one layer fewer per step. A BatchNorm with no such layer stays (the same affine map)."""
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


def shapes(gm: fx.GraphModule, sample: Tensor) -> dict[fx.Node, tuple[int, ...]]:
    """Per-sample shape of every tensor node, from one sample; the neurons are skipped (identity for
    shapes) so their state is left as it was."""
    found = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, Tensor):
                found[n] = tuple(out.shape[1:])
            return out

        def call_module(self, target, args, kwargs):
            m = self.fetch_attr(target)
            return args[0] if isinstance(m, NEURONS) else super().call_module(target, args, kwargs)

    with torch.no_grad():
        Recorder(gm).run(sample[:1])
    return found


def pool_geometry(node: fx.Node, m: nn.Module, in_shape: tuple, out_shape: tuple):
    """(kernel, stride, padding) of an average pool that is a fixed window sum divided by the window's area;
    TypeError for one that is not (an uneven adaptive pool, ceil_mode, divisor_override, padding left out
    of the count)."""
    if isinstance(m, nn.AdaptiveAvgPool2d):  # a fixed pool where the input tiles evenly
        (hi, wi), (ho, wo) = in_shape[-2:], out_shape[-2:]
        if hi % ho or wi % wo:
            raise TypeError(
                f"cannot export AdaptiveAvgPool2d at node '{node.name}': input {hi}x{wi} does not "
                f"divide into {ho}x{wo}, so it is no fixed AvgPool2d"
            )
        return (hi // ho, wi // wo), (hi // ho, wi // wo), (0, 0)
    pair = nn.modules.utils._pair
    padding = pair(m.padding)
    if m.ceil_mode or m.divisor_override or (any(padding) and not m.count_include_pad):
        raise TypeError(
            f"cannot export AvgPool2d at node '{node.name}': NIR's AvgPool2d has no ceil_mode, "
            "divisor_override or count_include_pad=False"
        )
    return pair(m.kernel_size), pair(m.stride if m.stride is not None else m.kernel_size), padding
