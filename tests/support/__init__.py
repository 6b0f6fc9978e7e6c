"""Fixtures' machinery: free ports, real service processes, the infrastructure a run uses."""
