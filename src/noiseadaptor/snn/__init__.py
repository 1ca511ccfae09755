"""The SNN side: neurons, surrogate gradients, convert(), simulate(), run-time corrections, operation counts."""
