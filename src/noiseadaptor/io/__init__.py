"""Files: checkpoints, atomic writes, NIR/ONNX export, tables and plots."""
