"""Lightning plumbing of a training run: the data module and batches (`batches`), the Lightning
module (`lit_module`), the run's callbacks (`callbacks`), fitting, resuming and evaluating the
best checkpoint (`loop`), the golden parity files (`golden`) and the artifact metadata the
module carries (`metadata`). Everything here takes plain typed arguments, so a notebook or a
test drives it without Hydra. May import `common`, `data`, `metrics`, `models` and Lightning;
never Hydra, `serving`, `evaluation` or anything above (Hydra wiring lives in `experiments`).
"""
