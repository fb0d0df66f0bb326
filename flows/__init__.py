"""Prefect flows: thin orchestration over `attnbench.pipeline`. Run one with
`python -m flows.<name> --help`, or all of them through `attnbench run`."""
