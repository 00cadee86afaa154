"""Offline stand-ins for the outside world, shared by the tests and the benchmarks; no test framework.

`loopback_exchange`: a loopback HTTP server that answers like Coinbase, with injectable faults.
`dagster_server`: starts `dagster dev` on a loopback port and drives it through GraphQL.
`postgres`: a throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries, a random password).
`dask_cluster`: a Dask scheduler and workers as separate processes, each with its own directories.
`scale_out`: both of the above as docs/scale-out.md describes, backfills through them, and the comparison
with the embedded store.
"""
