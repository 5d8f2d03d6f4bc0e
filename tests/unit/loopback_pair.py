"""A two-node config on loopback addresses, with state and control socket under {tmp}
(format it with tmp=...): the tests that build a real Agent share it."""

LOOPBACK_PAIR = """
[cluster]
name = "t"
preferred = "alpha"
state_dir = "{tmp}/state"
control_socket = "{tmp}/run/control.sock"
[vip]
address = "127.0.1.50/24"
interface = "eth0"
[networks.a]
subnet = "127.0.1.0/24"
[networks.b]
subnet = "127.0.2.0/24"
[nodes.alpha]
a = {{ interface = "eth0", address = "127.0.1.11" }}
b = {{ interface = "eth1", address = "127.0.2.11" }}
[nodes.beta]
a = {{ interface = "eth0", address = "127.0.1.12" }}
b = {{ interface = "eth1", address = "127.0.2.12" }}
"""
