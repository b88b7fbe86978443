import os
import sys

# Smoke runs (the test suite's) are bound by XLA compilation, not by compute: a
# cheaper backend optimisation level cuts their time by about a fifth. XLA reads
# XLA_FLAGS when JAX starts its backend, so this must precede any computation.
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "--smoke" in sys.argv[1:] and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SMOKE_XLA_FLAGS).strip()

from experiments.cli import main  # noqa: E402

raise SystemExit(main())
