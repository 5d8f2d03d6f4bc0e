"""The web console: state of both nodes and operator buttons, served by the agent.

`server.ConsoleServer` (HTTP on the agent's event loop), `auth` (token file,
sessions, CSRF, login throttle), `http` (a strict HTTP/1.1 request reader),
`assets/` (the page, its script and style: no inline script, strict CSP).
"""
