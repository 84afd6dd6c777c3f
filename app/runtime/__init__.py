"""The process: lifecycle and signals (process.py, sd_notify.py), opening its resources at start-up
(startup.py) and the embedded Redis/PostgreSQL default (embedded*.py). The engine it runs is
app/queue; the sidecar it serves is app/web."""
