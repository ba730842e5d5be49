"""Benchmarks, all in one place; each measures its baseline in the same run and reports the ratio.

- ``layers``: train-step time of each custom layer against its Keras built-in twin.
- ``train``: training throughput from ``DrivingDataset`` vs in-memory tensors, and per PilotNet variant.
- ``pipeline``: augmented images/s of ``DrivingDataset`` vs the usual imread-per-sample generator.
- ``sim``: simulator rendering frames/s vs a per-pixel ray cast.
- ``latency``: batch-1 p50/p99 and throughput of exported artifacts, against a CPU floor.
- ``serve``, ``replay``, ``gpu``: the drive server's load test, replay throughput, GPU figures.

Each module uses the project's public API only, and is the code behind ``e2e-drive bench <name>``.
"""
