"""Tests of ``recovery.demo``: the command, one process's run, the fleet, their parts."""
