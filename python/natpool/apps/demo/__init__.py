"""``natpool demo``: natpool proxy on loopback under real concurrent connections, verified and reported.

It uses the proxy through its public names (``natpool.apps.proxy``) only. One idea per module:
:mod:`~natpool.apps.demo.backend` (servers that answer with the peer address they saw),
:mod:`~natpool.apps.demo.run` (one run: the load and its verification), :mod:`~natpool.apps.demo.orders` (the
load split among the pool's reuse orders, ``--orders``), :mod:`~natpool.apps.demo.compare` (the
same load with natpool and with the kernel, in alternating rounds), :mod:`~natpool.apps.demo.workers` (the load
through ``natpool proxy --workers N``) and :mod:`~natpool.apps.demo.ledger` (no NAT address held by two workers
at once), :mod:`~natpool.apps.demo.report` (the text reports) and :mod:`~natpool.apps.demo.command` (the command
line).
"""
