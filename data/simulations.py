"""The simulations a sparse scan can be made with, by name (no torch: the command line's help lists them)."""

#: Simulation name -> the label outputs carry: "honest" (a finer grid, an independent pixel model and detector
#: sub-rays; :func:`sparsect.data.simulate`) and "same-grid", the inverse crime, only when asked for by name.
SIMULATIONS: dict[str, str] = {"honest": "honest", "same-grid": "same-grid (inverse crime)"}

__all__ = ["SIMULATIONS"]
