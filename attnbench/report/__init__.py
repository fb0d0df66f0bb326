"""Reports built from MLflow through `attnbench.results` (so any past run can be re-reported)."""
