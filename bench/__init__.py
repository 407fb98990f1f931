"""The tilefn benchmark suite: tilefn and its yardsticks side by side (``python -m bench``).

Layout: ``run`` starts the servers and orchestrates; ``measure`` is the client-side entry point,
run as a fresh process per measurement; ``workloads`` hold what a client does; ``peers`` hold
the yardsticks' servers and drivers (gRPC echo, Arrow Flight, Ray, multiprocessing spawn).
"""
