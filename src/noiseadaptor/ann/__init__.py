"""The ANN side: networks, the activation quantizer, prepare() and scale initialisation."""
