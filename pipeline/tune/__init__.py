"""A study's sweep under Ray Tune, split where the process changes (`pipeline.sweep` runs it top to bottom).

In Ray's processes:
    trainable        the Tune trial function, the DDP rank under Ray Train, reading a checkpoint
In the driver:
    tuner            the Ray runtime and the Tuner: param space, search, scheduler, concurrency, RunConfig
    callback         the driver's hook into Tune's loop: the guard's checks, closing the runs of trials let go
    guard            ending a sweep early and resumably: signals, lost services
    resume           what a sweep's Tune folder says between two runs: completed, restorable, unfinished trials
Both:
    ray_workarounds  every workaround of Ray behaviour that has no public API, each with its reason and its test

This `__init__` imports nothing, so that a trial actor imports `trainable` and what it needs, not the driver's code.
"""
