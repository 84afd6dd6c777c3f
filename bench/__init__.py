"""Benchmarks that print figures: Workhorse against its peers, and the job families' own."""
