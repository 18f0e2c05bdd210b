"""``sparsect batch``: the command, its plan of work units, the computation, the output store and executors."""
