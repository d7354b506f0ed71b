"""The parts of tools/benchmark.py, one module each."""
