"""Tests of ``recovery.cluster``: nodes in one process, across processes, under faults
and forgeries."""
