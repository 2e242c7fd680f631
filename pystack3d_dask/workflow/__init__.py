"""The workflow: schema, config and profiles, the plan, its run, status and clean.

Imports steps, store, io and runtime; the report only lazily, after a run.
"""
