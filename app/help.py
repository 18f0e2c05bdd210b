"""Option help shared by ``sparsect reconstruct`` and ``sparsect batch`` (one wording for one option)."""

from sparsect.reconstruct import registry

METHOD_HELP = f"{', '.join(registry.METHODS)}; repeat or comma-separate."
ITERATIONS_HELP = ("Main-loop iterations of every iterative method (epochs for OS-SART, Adam steps for the networks, "
                   "whose warm start comes on top); at least 1. Default: each method's own (FBP has none).")
VARIANT_HELP = ("How the networks (lrnn, wire, siren) are fitted; repeat or comma-separate. ramp_loss: "
                "ramp-filter-weighted sinogram loss, a preconditioner worth several dB at the same budget; "
                "fbp_init: warm start from the FBP image; tv: small total-variation penalty; coarse_to_fine: "
                "coordinate scale ramped up over the first half of the fit. `--variant paper` alone gives the "
                "published formulation. Default: the recommended set "
                f"({','.join(registry.RECOMMENDED_VARIANTS)}).")
