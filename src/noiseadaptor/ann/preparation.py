"""prepare(model, config): a float network -> a quantization-aware copy of it.

The model is traced with torch.fx so that every *call* of a ReLU gets its own quantizer: torchvision's
ResNet blocks reuse one ``nn.ReLU`` module two or three times, and other models call ``F.relu``;
replacing modules by name would share one learned scale between different layers or miss the call.
Max-pooling becomes average-pooling of the same geometry (spiking neurons can only sum), and any
layer whose meaning in a spiking network is unknown is refused up front, naming it.
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from .quantizer import QuantConfig, QuantReLU

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
_MAX_POOL_FUNCTIONS = {F.max_pool1d: nn.AvgPool1d, F.max_pool2d: nn.AvgPool2d, F.max_pool3d: nn.AvgPool3d}
_MAX_POOL_MODULES = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}

# Layers that act on each time step of a spiking network as they do on the ANN's activations:
# linear maps (the SNN feeds them spikes * threshold) and shape plumbing.
LINEAR_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    QuantReLU,
)
_LINEAR_FUNCTIONS = {
    operator.add,
    operator.iadd,
    operator.sub,
    operator.neg,
    torch.add,
    torch.sub,
    torch.cat,
    torch.flatten,
    torch.permute,
    torch.reshape,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    torch.mean,
    operator.getitem,
    getattr,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.dropout,
    F.linear,
    F.conv2d,
}
_SCALAR_FUNCTIONS = {operator.mul, operator.truediv, torch.mul}  # linear when one side is a constant
_SIZE_FUNCTIONS = {operator.eq, operator.ne, operator.floordiv, torch._assert}  # shape checks: on sizes only
_LINEAR_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "contiguous",
    "mean",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "add",
    "add_",
    "dim",
    "chunk",
    "split",
    "expand",
    "expand_as",
    "view_as",
    "flip",
}


def prepare(model: nn.Module, config: QuantConfig | None = None) -> fx.GraphModule:
    """Return a copy of `model` with each ReLU call replaced by its own `QuantReLU` and each max-pool by
    an average-pool of the same geometry. The input model is left untouched.

    Scales start at 1.0: call `init_scales` next (or load a checkpoint).

    Raises TypeError naming the layer when the model holds one with no spiking equivalent (GELU,
    sigmoid, a custom leaf module, ...) or when torch.fx cannot trace its forward.
    """
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a noiseadaptor.QuantConfig, got {type(config).__name__}")
    return replace_activations(model, lambda: QuantReLU(config))


def replace_activations(model: nn.Module, make_activation: Callable[[], nn.Module]) -> fx.GraphModule:
    """The rewrite behind prepare() and direct-training conversion: a traced copy of `model` in which
    every ReLU call is routed through its own ``make_activation()`` and every max-pool becomes an
    average-pool; anything with no spiking equivalent is refused, named."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    kind = type(make_activation())
    if any(isinstance(m, kind) for m in model.modules()):
        raise ValueError(
            f"this model is already prepared (it contains {kind.__name__} layers); start from the float model"
        )
    graph_module = _trace(copy.deepcopy(model))
    taken: set[str] = set()
    # Classify every node before changing any: a reused ReLU module must be seen as a ReLU at each call.
    roles = [(node, _role(graph_module, node)) for node in graph_module.graph.nodes]
    pools = []
    for node, role in roles:
        if role == "relu":
            _replace_with_module(graph_module, node, make_activation(), _input_of(node), taken)
        elif role == "max_pool":
            pools.append(
                _replace_with_module(graph_module, node, _average_pool_like(graph_module, node), _input_of(node), taken)
            )
    graph_module.meta["replaced_max_pools"] = pools
    if not any(isinstance(m, kind) for m in graph_module.modules()):
        raise ValueError("the model has no ReLU to replace: these methods convert ReLU networks")
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    if tensor is not None:  # new layers join the model's device (a CUDA model gets CUDA scales)
        graph_module.to(tensor.device)
    return graph_module.train(model.training)


@torch.no_grad()
def requantize(qmodel: nn.Module, config: QuantConfig) -> nn.Module:
    """Give every quantizer of a prepared model a new config, in place, keeping its threshold p*s (the
    scale becomes threshold / new p): e.g. the dual-phase source ANN (`QuantConfig.clip()`) becomes
    its QC-ANN (`QuantConfig.dual_phase(p=T)`) with the thresholds it learned. Returns qmodel."""
    layers = quantizers(qmodel)
    if not layers:
        raise ValueError("requantize() expects a model returned by prepare(); this one has no QuantReLU")
    for _, q in layers:
        threshold = q.threshold.item()
        q.config, q.p = config, config.p
        q.scale.fill_(threshold / config.p)
    return qmodel


def batchnorms_after_replaced_pools(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, BatchNorm) pairs of a prepared model that see the output of an average-pool prepare()
    made from a max-pool, directly or through later layers: their running statistics describe
    max-pooled activations. Empty for a model without replaced pools (or not from prepare())."""
    pools = set(getattr(model, "meta", {}).get("replaced_max_pools", ()))
    if not pools or not isinstance(model, fx.GraphModule):
        return []
    downstream, found = set(), {}
    for node in model.graph.nodes:  # topological order: inputs before users
        if (node.op == "call_module" and node.target in pools) or any(a in downstream for a in node.all_input_nodes):
            downstream.add(node)
            if node.op == "call_module":
                module = model.get_submodule(node.target)
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    found[node.target] = module  # a module called twice is listed once
    return list(found.items())


def quantizers(model: nn.Module) -> list[tuple[str, QuantReLU]]:
    """The (name, QuantReLU) pairs of a prepared model, in execution order."""
    if isinstance(model, fx.GraphModule):
        found = [(n.target, model.get_submodule(n.target)) for n in model.graph.nodes if n.op == "call_module"]
        return [(name, m) for name, m in found if isinstance(m, QuantReLU)]
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantReLU)]


def _trace(model: nn.Module) -> fx.GraphModule:
    """`model` traced in eval mode (its mode is restored): what a forward decides from ``self.training`` is
    fixed by the trace, so the graph is the inference one (dropout and stochastic depth called as functions
    are the identity, auxiliary heads are left out); leaf modules (BatchNorm, nn.Dropout) still follow the
    prepared model's mode."""
    was_training = model.training
    model.eval()
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # fx raises many kinds; all mean the same to the user
        raise TypeError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(err).__name__}: {err}). prepare() needs "
            "a forward without data-dependent Python control flow (no `if x.sum() > 0`, no loops over "
            "tensor values); move such logic out of forward or into a leaf module."
        ) from err
    finally:
        model.train(was_training)


def _role(gm: fx.GraphModule, node: fx.Node) -> str:
    """'relu', 'max_pool' or 'linear'; raises TypeError for anything a spiking network cannot run."""
    role, why = classify(gm, node)
    if role == "refused":
        raise TypeError(f"cannot convert {describe(gm, node)}: {why}")
    return role


def _varies(arg) -> bool:
    """Whether an argument of a node is an activation (a node computed from the input), not a constant, a
    parameter (`get_attr`) or a size (`x.shape`, `x.size()` and arithmetic on them)."""
    return isinstance(arg, fx.Node) and arg.op != "get_attr" and not _is_size(arg)


def _is_size(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in ("shape", "ndim")
    if node.op == "call_function" and node.target in (operator.getitem, operator.mul, operator.add, operator.sub,
                                                       operator.floordiv, operator.eq, operator.ne):  # fmt: skip
        nodes = [a for a in node.args if isinstance(a, fx.Node)]
        return bool(nodes) and all(_is_size(a) for a in nodes)
    return False


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """A node as a message names it: module 'layer1.0.act' (GELU), call of gelu() at '...', tensor method ..."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        shown = module if type(module) in _MAX_POOL_MODULES else type(module).__name__
        return f"module '{node.target}' ({shown})"
    if node.op == "call_function":
        return f"call of {getattr(node.target, '__name__', str(node.target))}() at '{_where(node)}'"
    return f"tensor method .{node.target}() at '{_where(node)}'"


def classify(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str]:
    """What prepare() does with one node of a traced model: ('relu', how) becomes a quantizer (a ReLU, or
    a clip to [0, b]: ReLU6, Hardtanh(0, b), clamp(x, 0, b)); ('max_pool', how) becomes an average pool;
    ('linear', note) is kept; ('refused', why) has no spiking equivalent: `why` says so and what to use
    instead (`describe` names the node)."""
    if node.op in ("placeholder", "output", "get_attr"):
        return "linear", ""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        name = type(module).__name__
        if isinstance(module, nn.ReLU):
            return "relu", ""
        if isinstance(module, nn.Hardtanh) and module.min_val == 0 and module.max_val > 0:  # ReLU6 is one
            return "relu", f"its bound {module.max_val:g} becomes the learned threshold p*s"
        if type(module) in _MAX_POOL_MODULES:
            if module.return_indices or _not_one(module.dilation):
                return "refused", "only max-pooling without dilation or return_indices can become average-pooling"
            return "max_pool", ""
        if isinstance(module, LINEAR_MODULES) or name == "StochasticDepth":  # torchvision.ops: dropout-like
            return "linear", _KEPT_NOTES.get(name, "")
        return "refused", _why_unsupported(name)
    name = getattr(node.target, "__name__", str(node.target)) if node.op == "call_function" else node.target
    clip = node.target in _RELU_FUNCTIONS or (node.op == "call_method" and node.target in _RELU_METHODS)
    bound = None if clip else _clip_bound(node)
    if (clip or bound is not None) and not node.users:  # `x.relu_()` or `h.clamp_(0, 6)` as a statement
        return "refused", (
            "an in-place ReLU or clip whose result is not used: the quantizer that replaces it returns a new "
            "tensor; write x = F.relu(x) (or x = x.clamp(0, 6))"
        )
    if clip:
        return "relu", ""
    if bound is not None:
        return "relu", bound
    if node.op == "call_function":
        if node.target in _MAX_POOL_FUNCTIONS:
            args = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
            kwargs = args.kwargs if args is not None else node.kwargs
            if kwargs.get("return_indices") or _not_one(kwargs.get("dilation", 1)):
                return "refused", "only max-pooling without dilation or return_indices can become average-pooling"
            return "max_pool", ""
        if node.target in _LINEAR_FUNCTIONS:
            return "linear", ""
        if node.target in _SCALAR_FUNCTIONS and sum(_varies(a) for a in node.args) <= 1:
            if not (node.target is operator.truediv and _varies(node.args[1])):  # x / c, not c / x
                return "linear", ""  # times a number or a parameter (a layer scale): linear
        if node.target in _SIZE_FUNCTIONS and not any(_varies(a) for a in node.args):
            return "linear", ""
        if name in _IDENTITY_AT_INFERENCE:
            return "linear", "the identity at inference"
    elif node.target in _LINEAR_METHODS:
        return "linear", ""
    return "refused", _why_unsupported(name)


_CLIP_FUNCTIONS = {torch.clamp, torch.clip, F.hardtanh, F.relu6}
_IDENTITY_AT_INFERENCE = {"stochastic_depth"}  # torchvision.ops: drops residual branches in training only
_CLIP_METHODS = {"clamp", "clip", "clamp_", "clip_"}
_KEPT_NOTES = {
    **dict.fromkeys(("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
                    "folded into the conv/linear before it by convert (else applied at every step)"),
    **dict.fromkeys(("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "StochasticDepth"), "the identity at inference"),
}  # fmt: skip


def _clip_bound(node: fx.Node) -> str | None:
    """For a call that clips to [0, b] (F.relu6, F.hardtanh(x, 0, b), torch.clamp / x.clamp(0, b), with b
    a positive number or absent): what becomes of its bound. None for anything else."""
    if node.op == "call_function" and node.target in _CLIP_FUNCTIONS:
        name = node.target.__name__
    elif node.op == "call_method" and node.target in _CLIP_METHODS:
        name = node.target
    else:
        return None
    if name == "relu6":
        return "its bound 6 becomes the learned threshold p*s"
    low_key, high_key, low, high = (
        ("min_val", "max_val", -1.0, 1.0) if name == "hardtanh" else ("min", "max", None, None)
    )
    rest = node.args[1:]
    low = rest[0] if len(rest) > 0 else node.kwargs.get(low_key, low)
    high = rest[1] if len(rest) > 1 else node.kwargs.get(high_key, high)
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in (low, high)):
        return None  # a bound that is a tensor: not a fixed clip
    if low != 0 or (high is not None and high <= 0):
        return None
    return "a clamp at 0 alone: a ReLU" if high is None else f"its bound {high:g} becomes the learned threshold p*s"


_ALTERNATIVES = {
    "gelu": "the literature converts GELU with multi-threshold or expectation-compensating neurons (spiking "
    "transformers); this library does not: replace it by ReLU and fine-tune",
    "silu": "SiLU/Swish has no IF form; replace it by ReLU and fine-tune (conversions of it need other neurons)",
    "hardswish": "Hardswish multiplies the input by a clip of itself; replace it by ReLU and fine-tune",
    "hardsigmoid": "Hardsigmoid gates (squeeze-excitation) multiply two activations; replace the block",
    "sigmoid": "a sigmoid gate (e.g. squeeze-excitation) multiplies two activations; remove it or replace it",
    "softmax": "at the output, remove it (the argmax is the same); inside the network (attention) it has no "
    "spiking form here",
    "logsoftmax": "at the output, remove it (the argmax is the same)",
    "layernorm": "LayerNorm divides by each sample's own statistics at every step; use BatchNorm (folded into "
    "the conv/linear) and fine-tune",
    "groupnorm": "GroupNorm divides by each sample's own statistics at every step; use BatchNorm and fine-tune",
    "mul": "a product of two activations (a gate, attention) is not a linear map of spikes",
    "matmul": "a product of two activations (attention) is not a linear map of spikes",
    "multiheadattention": "attention multiplies activations; spiking transformers need other neurons",
    "leakyrelu": "a negative slope needs negative spikes of another rate; replace it by ReLU and fine-tune",
    "elu": "replace it by ReLU and fine-tune",
    "tanh": "replace it by ReLU and fine-tune",
    "adaptivemaxpool2d": "use average pooling (AdaptiveAvgPool2d)",
}
"""Advice by operation, under its name lower-cased without underscores (`_advice_key`): the module, the
function and the method spelling of one operation (LayerNorm, layer_norm) share an entry."""
_ALTERNATIVES.update(prelu=_ALTERNATIVES["leakyrelu"], layernorm2d=_ALTERNATIVES["layernorm"])


def _why_unsupported(name: str) -> str:
    advice = _ALTERNATIVES.get(str(name).lower().replace("_", ""))
    if advice:
        return f"{name} has no integrate-and-fire equivalent: {advice}."
    return (
        f"{name} has no integrate-and-fire equivalent. A convertible network uses only ReLU as "
        "nonlinearity, max- or average-pooling, and linear layers (conv, linear, batch norm, add, "
        "flatten); replace it (e.g. GELU/SiLU/LeakyReLU -> nn.ReLU, softmax at the output -> nothing) "
        "and fine-tune the float model before prepare()."
    )


def _not_one(value) -> bool:
    return any(v != 1 for v in (value if isinstance(value, (tuple, list)) else (value,)))


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    return f"{next(reversed(stack))}:{node.name}" if stack else node.name


def _input_of(node: fx.Node) -> fx.Node:
    return node.args[0] if node.args else node.kwargs["input"]


def _average_pool_like(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    if node.op == "call_module":
        pool = gm.get_submodule(node.target)
        avg_class = _MAX_POOL_MODULES[type(pool)]
        kernel, stride, padding, ceil = pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode
    else:
        avg_class = _MAX_POOL_FUNCTIONS[node.target]
        args = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True).kwargs
        if args.get("return_indices") or _not_one(args.get("dilation", 1)):
            raise TypeError(
                f"cannot convert max-pooling at '{_where(node)}': only max-pooling without "
                "dilation or return_indices can become average-pooling"
            )
        kernel, stride, padding, ceil = (
            args["kernel_size"],
            args.get("stride") or args["kernel_size"],
            args.get("padding", 0),
            args.get("ceil_mode", False),
        )
    # count_include_pad=True keeps the pool a plain convolution with constant weights (exportable as a
    # sum-pool and a scale); padded zeros are exactly what a silent neuron contributes.
    return avg_class(kernel, stride, padding, ceil_mode=ceil, count_include_pad=True)


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, source: fx.Node, taken: set[str]) -> str:
    """Route `node` through a new submodule named after where it was (``layer1.0.relu``, then
    ``layer1.0.relu_1`` for the second call of a reused module); returns that name."""
    if node.op == "call_module":
        base = node.target
    else:
        stack = node.meta.get("nn_module_stack")
        owner = next(reversed(stack)) if stack else ""
        own = node.name.replace("max_pool", "avg_pool")  # name the module for what it now is
        base = f"{owner}.{own}" if owner else own
    name, k = base, 0
    while name in taken or (name != node.target and _exists(gm, name)):
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        replacement = gm.graph.call_module(name, args=(source,))
    node.replace_all_uses_with(replacement)
    gm.graph.erase_node(node)
    return name


def _exists(gm: nn.Module, name: str) -> bool:
    try:
        gm.get_submodule(name)
        return True
    except AttributeError:
        return False
