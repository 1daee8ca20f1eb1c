"""``natpool demo``: natpool proxy on loopback under real concurrent connections, verified and reported.

It uses the proxy through its public names (``natpool.apps.proxy``) only. One idea per module:
:mod:`~natpool.apps.demo.backend` (servers that answer with the peer address they saw),
:mod:`~natpool.apps.demo.run` (one run: the load and its verification), :mod:`~natpool.apps.demo.compare` (the
same load with natpool and with the kernel, in alternating rounds), :mod:`~natpool.apps.demo.report` (the text
report and the comparison) and :mod:`~natpool.apps.demo.command` (the command line).
"""
