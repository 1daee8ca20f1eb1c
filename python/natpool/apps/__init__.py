"""natpool's applications, built on the library (``natpool.Pool``) and nothing else of it.

* :mod:`~natpool.apps.cli`: the ``natpool`` command (also ``python -m natpool``);
* :mod:`~natpool.apps.simulate`: ``natpool simulate``, the pool alone under a simulated SLB workload;
* :mod:`~natpool.apps.proxy`: ``natpool proxy``, a TCP load balancer with client NAT;
* :mod:`~natpool.apps.demo`: ``natpool demo``, the proxy on loopback under real connections, verified;
* :mod:`~natpool.apps.plot`: the ``--plot`` timelines (matplotlib, the extra ``natpool[plot]``).
"""
