"""The HTTP server of /metrics, the same on every prometheus-client this agent supports.

prometheus-client's ``start_http_server`` returns the server and its thread
from 0.17 on; 0.16 (Debian 12) returns nothing, so the agent could never
close it (a reload that moves ``metrics.listen`` would leave the old port
open). This builds the same server from the parts both versions have
(``make_wsgi_app`` and the standard library), and returns both.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # a scrape thread never holds the agent's exit (nor piles up in a list to join)
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base class names it format
        """No line per scrape: the journal is for decisions."""


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` on ``host:port`` (IPv4 or IPv6) in a daemon thread.

    Raises OSError if the address cannot be resolved or bound."""
    # the family of the address, as http.server and prometheus-client choose it
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_ThreadingServer):
        address_family = family

    server = make_server(host, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
