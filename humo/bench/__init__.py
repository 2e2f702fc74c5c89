"""Benchmarks behind `humo bench NAME`. Each module has `configure(parser)` and `run(args)` and prints a
ratio against a peer measured in the same process."""
