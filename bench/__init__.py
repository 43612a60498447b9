"""xdsbus benchmarks (docs/design.md §8): `make bench` or `python -m bench [name ...]`.

Each benchmark measures its value and its baseline in the same run, makes its correctness checks (it
raises when one fails) and writes `bench/results/<name>.json` with its budget and whether it held; none
asserts a time. Sizes default to the figures of docs/design.md §8 and can be scaled down through
environment variables (listed by `python -m bench --list`) or `-p NAME=VALUE`; tests/bench runs every
one at a small size. bench/README.md says what each measures.
"""
