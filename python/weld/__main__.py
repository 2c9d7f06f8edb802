"""`python -m weld ARGS`: the weld command itself, for environments whose bin/ is not on PATH."""
import os
import sys

from . import binary

if __name__ == "__main__":
    os.execv(binary(), ["weld", *sys.argv[1:]])
