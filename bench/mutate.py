"""The mutation suite as a bench: ``python bench/mutate.py [NAME ...] [--seeds N] [--jobs N]``.

The same as ``meridian sim mutate`` (``sim/mutate.py``): each bug of ``tests/mutations`` is planted
in a throw-away copy of the code, the simulator alone runs over a fixed set of scenarios and seeds,
and the caught/survived table and the score are printed. The checkout is never modified. It takes
minutes on 2 cores, so it is a bench, not a test; ``tests/test_sim_mutate.py`` runs three
mutations to prove the machinery.
"""

from __future__ import annotations

import sys

from meridian.sim.cli import main

if __name__ == "__main__":
    sys.exit(main(["mutate", *sys.argv[1:]]))
