"""CanaryHub's client for CI pipelines and applications: the `canaryhub` command (commands.py),
the Python client (client.py) and the one HTTP layer under both (http.py).

Standard library only, and nothing outside this folder is imported: no Django, no app module.
"""
