"""``natpool demo``: natpool proxy on loopback under real concurrent connections, verified and reported.

:mod:`~natpool.demo.backend` (servers that answer with the peer address they saw), :mod:`~natpool.demo.run`
(one run: the load and its verification), :mod:`~natpool.demo.report` (the text report and the kernel
comparison), :mod:`~natpool.demo.command` (the command line).
"""
