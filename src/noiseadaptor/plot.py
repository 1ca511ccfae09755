"""Pictures of what a converted network does (matplotlib; each function returns a `Figure`).

From one input's `Recording` (`noiseadaptor.snn.recording.record`):
    raster(recording)          spikes of the recorded neurons of every layer over the steps
    traces(recording)          membrane potentials of a few neurons per layer, in units of the threshold
From a `SimulationResult` (`simulate`; the conversion error needs ``reference=`` the quantized ANN):
    firing_rates(result)       spike events per neuron per step of every layer, against T
    conversion_error(result)   each layer's mean |SNN rate - ANN activation| / threshold, against T

The figures are built without pyplot (no global state): ``fig.savefig(path)`` writes one, and a notebook
shows one returned as a cell's value.
"""

from __future__ import annotations

from matplotlib import colormaps
from matplotlib.figure import Figure

from .snn.recording import Recording

_POSITIVE, _NEGATIVE = "tab:blue", "tab:red"


def _layer_axes(layers: list[str], width: float = 7.0, height: float = 1.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, 0.6 + height * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def raster(recording: Recording) -> Figure:
    """One panel per neuron layer: a mark at (step, neuron) for every spike of the recorded neurons (red for
    a negative spike). Neurons are numbered 0..n-1 in the order of `recording.neurons[layer]`."""
    fig, axes = _layer_axes(recording.layers)
    for ax, layer in zip(axes, recording.layers):
        spikes = recording.spikes[layer]
        size = min(100.0, max(1.0, (100.0 / spikes.shape[1]) ** 2))  # a mark one neuron's row high
        for sign, colour in ((1, _POSITIVE), (-1, _NEGATIVE)):
            step, neuron = (spikes == sign).nonzero(as_tuple=True)
            if len(step) or sign == 1:
                ax.scatter((step + 1).numpy(), neuron.numpy(), marker="|", s=size, color=colour, linewidths=1.5,
                           label="spike" if sign == 1 else "negative spike")  # fmt: skip
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
        ax.set_ylabel("neuron")
        n, size = spikes.shape[1], recording.size[layer]
        ax.set_title(f"{layer}: {n} of {size} neurons, {int(spikes.abs().sum())} spikes", fontsize=9, loc="left")
    axes[-1].set_xlabel("time step")
    axes[-1].set_xlim(0.5, recording.T + 0.5)
    fig.suptitle("Spike raster, one input")
    return fig


def trace_neurons(recording: Recording, layer: str, count: int) -> list[int]:
    """The `count` recorded neurons of `layer` whose spike count is nearest half the steps (ties by
    position): neurons that both fire and wait, whose traces show the integrate, fire and reset. Returned as
    positions in the recording; the neurons `traces` draws."""
    events = recording.spikes[layer].abs().sum(0)
    order = sorted(range(len(events)), key=lambda i: (abs(float(events[i]) - recording.T / 2), i))
    return order[:count]


def traces(recording: Recording, count: int = 3) -> Figure:
    """One panel per neuron layer: the membrane potential (after integrating, before the reset, in units of
    the threshold) of `count` of its recorded neurons (`trace_neurons`) over the steps, with the threshold at 1."""
    fig, axes = _layer_axes(recording.layers)
    steps = range(1, recording.T + 1)
    for ax, layer in zip(axes, recording.layers):
        for i in trace_neurons(recording, layer, count):
            index = int(recording.neurons[layer][i])
            ax.plot(steps, recording.membrane[layer][:, i].numpy(), marker=".", label=f"neuron {index}")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylabel("u / θ")
        ax.set_title(layer, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time step")
    fig.suptitle("Membrane potential (fires at u / θ ≥ 1), one input")
    return fig


def _per_layer_curves(values: dict[int, dict[str, float]], ylabel: str, title: str) -> Figure:
    """One curve per layer against T, coloured by depth (first layer dark, last light)."""
    fig = Figure(figsize=(8.5, 4), layout="constrained")
    ax = fig.subplots()
    steps = sorted(values)
    layers = list(values[steps[0]])
    depth = colormaps["viridis"]
    for i, layer in enumerate(layers):
        colour = depth(i / max(1, len(layers) - 1) * 0.9)
        ax.plot(
            steps, [values[t][layer] for t in steps], marker="." if len(steps) < 20 else None, label=layer, color=colour
        )
    if steps[-1] / steps[0] >= 16:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("T (time steps)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=1 + len(layers) // 16, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def firing_rates(result) -> Figure:
    """Every neuron layer's firing rate (spike events per neuron per step over steps 1..T) against T."""
    return _per_layer_curves(result.firing_rate, "spikes / neuron / step", "Firing rate per layer")


def conversion_error(result) -> Figure:
    """Every neuron layer's conversion error against T: the mean over its neurons and the test images of
    |SNN output averaged over steps 1..T - quantized ANN activation| / threshold. Needs a result of
    ``simulate(..., reference=qmodel)``."""
    if not result.layer_error:
        raise ValueError("this result has no per-layer error: simulate with reference=<the quantized ANN>")
    return _per_layer_curves(result.layer_error, "|SNN rate - ANN| / θ", "Conversion error per layer")
