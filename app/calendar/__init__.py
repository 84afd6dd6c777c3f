"""Scheduling events and their reminders: creating and cancelling events with reminders in one
transaction (events.py) and how a reminder speaks of time (when.py)."""
