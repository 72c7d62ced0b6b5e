import sys

from .cli import main

# Not when a spawned process imports this module as its __mp_main__ (the worker processes of a local Dask
# cluster, `batch --jobs N`): they run what they were started for, not the command line again.
if __name__ == "__main__":
    sys.exit(main())
