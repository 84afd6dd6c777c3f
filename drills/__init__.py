"""Operational drills: the runbooks' procedures rehearsed end to end against real processes.

    python -m drills.rolling_deploy    two releases side by side, the old one drained, then a rollback

Each prints what happened (jobs produced, where they ran, lost, run twice) and exits 1 when an
invariant broke. The suite runs each in a short form.
"""
