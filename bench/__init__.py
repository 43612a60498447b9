"""xdsbus benchmarks (DESIGN §8): `make bench` or `python -m bench [name ...]`.

Each benchmark measures its value and its baseline in the same run and writes
`bench/results/<name>.json`; none of them asserts a time (budgets are compared by whoever reads the
results). Sizes default to the figures of DESIGN §8 and can be scaled down through environment
variables (listed by `python -m bench --list`) or `-p NAME=VALUE`.
"""
