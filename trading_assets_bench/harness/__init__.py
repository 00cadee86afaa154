"""Offline stand-ins for the outside world, shared by the tests and the benchmarks; no test framework.

`loopback_exchange`: a loopback HTTP server that answers like Coinbase, with injectable faults.
`dagster_server`: starts `dagster dev` on a loopback port and drives it through GraphQL.
"""
