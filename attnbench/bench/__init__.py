"""Long-sequence cost of attention: speed and memory of each implementation as lengths grow.

`python -m attnbench.bench --device cuda --out DIR` runs the whole grid with nothing but torch,
numpy, pandas, pyarrow and matplotlib (no pydantic, MLflow or Prefect), so it runs on a bare GPU
machine; `attnbench bench` and the Prefect `bench` flow wrap the same runner and log to MLflow.

Modules, one job each: `problem` (inputs), `implementations` (the registry), `check` (equality
with the reference before timing), `timing`, `memory`, `limits` (tanh and matmul rates measured
in the same run; on GPUs through `attention.kernels.tanh_limit`), `grid` (cells and their
order), `cell` (one cell, in or out of process), `full_model` (rows from `model_modes`:
training step, greedy decoding),
`runner` (the grid under a time budget), `tables` (LRA-style table), `targets` (checklist),
`markdown` and `outputs` (files written to the output folder).
"""
