"""The process: lifecycle and signals (process.py, sd_notify.py), the health/metrics sidecar,
the typed Resources every job receives, and the embedded Redis/PostgreSQL default.

Kept free of imports so that `app.runtime.resources` can be imported by jobs without pulling
in the process (which imports the jobs).
"""
