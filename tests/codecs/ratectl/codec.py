from ratectl import build  # noqa: F401  (the submission's entry: codec:build)
