"""The web console: state of both nodes and operator buttons, served by the agent.

`server.ConsoleServer` (HTTP on the agent's event loop, connection caps),
`auth` (token file, sessions, CSRF, per-client login throttle), `http` (a
strict HTTP/1.1 request reader), `tls` (the certificate and key checks, the
TLS server context), `assets/` (the page, its script and style: no inline
script, strict CSP).
"""
