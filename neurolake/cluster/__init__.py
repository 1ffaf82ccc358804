"""Ray, in one place: connecting (a local start or a cluster by address, once per process)
(:mod:`~neurolake.cluster.ray_env`), an actor pool with bounded calls in flight and a task map
(:mod:`~neurolake.cluster.pool`), and progress bars (:mod:`~neurolake.cluster.progress`).
No other package of neurolake imports ``ray``; importing this package does not import it yet.
"""
