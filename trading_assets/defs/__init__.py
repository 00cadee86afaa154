"""The Dagster shell: assets, checks, jobs, resources, schedules and sensors over the core.

Every process that loads the code location (the code server, each run worker and each step process of the
multiprocess executor) imports this package before polars, so it sets polars' thread pool here, unless
`POLARS_MAX_THREADS` is already set: a quarter of the cores this process may run on, at least one.
Polars' default, one thread per core in each process, lost ~35 % more CPU than one thread on the small
per-day frames of a backfill step (1,440-2,880 rows) while three runs' steps shared two cores
(docs/backfill-speed.md).
"""

import os

os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, len(os.sched_getaffinity(0)) // 4)))
