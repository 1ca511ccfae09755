"""Running a model only as far as one layer: a forward hook raises `StopForward` once it has what it
needs, and the caller suppresses it (``with contextlib.suppress(StopForward): model(x)``), so the
layers after it never run. Used by scale initialisation, offset spikes and dual-phase calibration."""


class StopForward(Exception):
    """Raised from a forward hook once the layer of interest has run (or seen its input)."""
