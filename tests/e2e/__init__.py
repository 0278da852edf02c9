"""End-to-end harness: compile a policy, load it into a firewall namespace and
check it with real mail and DNS servers and clients in network namespaces.

Scenarios are YAML fixtures in ``scenarios/``; tests/test_e2e_scenarios.py runs
them all.  The helper scripts (smtpd.py, canary.py, probe.py) run as separate
processes inside namespaces via ``ip netns exec``.
"""
