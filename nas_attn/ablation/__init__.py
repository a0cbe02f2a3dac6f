"""Ablation studies: designs that generate arms from a base spec (:mod:`.designs`), paired-seed
statistics over the trained arms (:mod:`.stats`) and Markdown/CSV reports (:mod:`.report`).

Training the arms is the runner's job; everything here is pure and works on a tidy table of
results (one row per arm and seed). pandas and scipy load only when the statistics are used.
"""

from nas_attn.ablation.designs import Arm, Cell, Design, cells_frame, factorial, loo, ofat, swap
from nas_attn.ablation.factors import Factor, parse_factor

__all__ = ["Arm", "Cell", "Design", "Factor", "cells_frame", "factorial", "loo", "ofat",
           "parse_factor", "swap"]
