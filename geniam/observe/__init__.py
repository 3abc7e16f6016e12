"""
Watching a running daemon: what every call did (structured log lines and
an access log), Prometheus metrics and a health check, served on the
status listener (L{geniam.web.status}).
"""
