import sys

from experiments.bench.cli import cli

cli(sys.argv[1:])
