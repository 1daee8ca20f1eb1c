"""``natpool demo``: natpool proxy on loopback under real concurrent connections, verified and reported.

:mod:`~natpool.apps.demo.backend` (servers that answer with the peer address they saw), :mod:`~natpool.apps.demo.run`
(one run: the load and its verification), :mod:`~natpool.apps.demo.report` (the text report and the kernel
comparison), :mod:`~natpool.apps.demo.command` (the command line).
"""
