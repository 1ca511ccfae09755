"""record(snn, image, T): what the neurons of a converted network do, step by step, for one input.

`simulate` keeps nothing per step (its memory does not grow with T); `record` is its opposite, for looking:
one input, T single steps, and for a chosen set of neurons in every layer the spike (+1, -1 for a negative
spike, 0) and the membrane potential of each step. `noiseadaptor.plot` draws them (a raster and membrane
traces); `noiseadaptor inspect` writes both from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import module_device, positive_int
from .neurons import IFNeuron, SpikingNetwork
from .simulation import floating_type


@dataclass
class Recording:
    """One input's run of T steps. Per neuron layer (named as in `SpikingNetwork.neurons()`):

    neurons[layer]: the flat indices (within one sample's layer) of the recorded neurons;
    spikes[layer]: ``[T, n]``, +1 a spike, -1 a negative spike, 0 none, at each step;
    membrane[layer]: ``[T, n]``, the membrane potential after integrating the step's input and before the
        reset, in units of the neuron's threshold (a neuron fires where it is >= 1);
    size[layer]: how many neurons the layer has for one sample.
    output: ``[T, classes]``, the network's output at each step (its running mean is the prediction)."""

    T: int
    neurons: dict[str, Tensor]
    spikes: dict[str, Tensor]
    membrane: dict[str, Tensor]
    size: dict[str, int]
    output: Tensor

    @property
    def layers(self) -> list[str]:
        return list(self.spikes)

    def prediction(self) -> Tensor:
        """The predicted class after each step 1..T (argmax of the output summed so far), ``[T]``."""
        return self.output.cumsum(0).argmax(-1)


def chosen_neurons(size: int, per_layer: int) -> Tensor:
    """`per_layer` flat indices spread evenly over a layer of `size` neurons (all of them when it has fewer)."""
    if size <= per_layer:
        return torch.arange(size)
    return torch.linspace(0, size - 1, per_layer).round().long().unique()


@torch.inference_mode()
def record(snn: SpikingNetwork, image: Tensor, T: int = 8, per_layer: int = 64) -> Recording:
    """Run `snn` on one `image` (``[C, H, W]``, or a batch of one) for `T` steps and record, in every neuron
    layer, `per_layer` neurons spread evenly over it (`chosen_neurons`). The network's own settings hold
    (negative spikes, initial membranes); it is reset before and after."""
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"record() expects the SpikingNetwork returned by convert(), got {type(snn).__name__}")
    T, per_layer = positive_int(T, "T"), positive_int(per_layer, "per_layer")
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise TypeError("record() needs one floating-point image tensor, [C, H, W] or [1, C, H, W]")
    if image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"record() runs one image; got a batch of {image.shape[0]} (pass images[i])")
    x = image if image.dim() == 4 else image.unsqueeze(0)
    x = x.to(module_device(snn), floating_type(snn))
    was_training = snn.training
    snn.eval()
    layers = snn.neurons()
    steps: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name, _ in layers}
    chosen: dict[str, Tensor] = {}

    def keep(name: str, neuron: IFNeuron):
        def hook(module, args, output: Tensor) -> None:
            threshold = neuron.threshold.to(output.dtype)
            spikes = (output / threshold).flatten()  # the neuron emits spike * threshold
            before = ((neuron.membrane + output) / threshold).flatten()  # the reset took spike * threshold
            if name not in chosen:
                chosen[name] = chosen_neurons(before.numel(), per_layer).to(before.device)
            steps[name].append((spikes[chosen[name]].cpu(), before[chosen[name]].cpu()))

        return hook

    handles = [neuron.register_forward_hook(keep(name, neuron)) for name, neuron in layers]
    snn.reset()
    try:
        outputs = [snn(x)[0].flatten().cpu() for _ in range(T)]
    finally:
        for h in handles:
            h.remove()
        size = {name: neuron.neurons_per_sample() for name, neuron in layers}
        snn.reset()
        snn.train(was_training)
    return Recording(
        T=T,
        neurons={name: index.cpu() for name, index in chosen.items()},
        spikes={name: torch.stack([s for s, _ in v]) for name, v in steps.items()},
        membrane={name: torch.stack([m for _, m in v]) for name, v in steps.items()},
        size=size,
        output=torch.stack(outputs),
    )
