"""The network-namespace lab: two systemd nodes, two switches, a client.

Everything the lab creates is named ``mqlab-*`` (namespaces, cgroups) or lives
under ``/run/mqlab`` so that ``lab down`` finds it again after a crash.
See :mod:`mosqit_failover.lab.control` for ``up``/``down``/``status``.
"""
