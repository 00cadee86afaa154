"""The Dask executor of `TA_EXECUTOR=dask`: dagster-dask's, with one Dask task per step *of each run*.

dagster-dask (0.29.27) names the Dask task of a step `<job name>.<step key>`, the same in every run of that
job. Dask keys identify results, so two runs of one job in flight at once on one cluster (a backfill's runs,
one per symbol, are all runs of the same asset job) share the task: the second run receives the first run's
step events and never executes its own step, and its partitions are silently not written. Here the task of
a step is `<job name>.<step key>-<run id>`: every run executes every step it plans, concurrently with the
other runs. Everything else is dagster-dask's (the step runs `query_on_dask_worker` on a worker, which
rebuilds the job from its code pointer and writes the step's events into the run's instance; Dask resource
requirements come from the step's `dagster-dask/resource_requirements` tag; no step retries), and only an
existing cluster is supported: `cluster: existing: address: tcp://HOST:8786`. The step's arguments travel
wrapped (`_Opaque`): dagster-dask's submit fails for runs whose steps use a concurrency pool (the models'
`training` pool), because Dask walks into the run's record.

Each task's Dask priority is minus its step's level in the plan: a worker that becomes free starts the first
steps of any run before the later steps of another (breadth-first over the runs in flight). A backfill's
runs (raw_candles, then features, one run per symbol) then keep every worker busy: with dagster-dask's
first-come order, 3 symbols on 2 workers ran as 2 whole runs on one worker and 1 on the other.

A worker that dies while it runs a step (kill -9, a lost machine) loses its Dask task; the scheduler runs
the task again on another worker (Dask's `allowed-failures`, 3 by default), which executes the step again
from its start. The store's writes are one transaction per batch of (symbol, day) slices that replace what
was there, so the second execution rewrites the same slices and nothing is lost or stored twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg
import dask.distributed
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker


def step_task_key(job_name: str, step_key: str, run_id: str) -> str:
    """The Dask key of one step of one run: dagster-dask's `<job>.<step>`, made unique by `-<run id>`. Dask
    groups tasks by the part before the dash, so the steps of all runs share one task prefix: the scheduler
    learns a step's duration from the runs before and can move a waiting step to an idle worker."""
    return f"{job_name}.{step_key}-{run_id}"


class _Opaque:
    """Task arguments Dask passes on without looking inside. Dask walks the tuples among a task's arguments
    (for futures to resolve), and the `DagsterRun` of a run whose steps use a pool (the model assets' training
    pool) holds a record that refuses iteration: submitted as is, such a run fails before any step starts."""

    def __init__(self, value: tuple[object, ...]) -> None:
        self.value = value


def _execute_step(dependencies: list[object], arguments: _Opaque) -> Sequence[DagsterEvent]:
    """On a worker: dagster-dask's step execution (`dependencies` only order the tasks)."""
    return query_on_dask_worker(dependencies, *arguments.value)


class RunScopedDaskExecutor(DaskExecutor):
    """dagster-dask's executor on an existing cluster, with a Dask task per step and run (module docstring)."""

    def __init__(self, address: str) -> None:
        super().__init__("existing", {"address": address})

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance")
        instance_ref = plan_context.instance.get_ref()
        run_id = plan_context.dagster_run.run_id
        with dask.distributed.Client(self.cluster_configuration["address"]) as client:
            futures: dict[str, dask.distributed.Future] = {}
            for level, step_level in enumerate(execution_plan.get_steps_to_execute_by_level()):
                for step in step_level:
                    # Dask runs a step once the futures of the steps it reads from are done.
                    dependencies = [
                        futures[key] for step_input in step.step_inputs for key in step_input.dependency_keys
                    ]
                    arguments = _Opaque(
                        (
                            plan_context.reconstructable_job,
                            plan_context.dagster_run,
                            plan_context.run_config,
                            [step.key],
                            instance_ref,
                            execution_plan.known_state,
                        )
                    )
                    futures[step.key] = client.submit(
                        _execute_step,
                        dependencies,
                        arguments,
                        key=step_task_key(plan_context.job_name, step.key, run_id),
                        priority=-level,
                        resources=get_dask_resource_requirements(step.tags),
                    )
            completed = dask.distributed.as_completed(list(futures.values()), with_results=True)
            # Interrupts (a terminated run) are allowed while waiting for the steps' results.
            for _future, step_events in iterate_with_context(raise_execution_interrupts, completed):
                for event in step_events:
                    if not isinstance(event, DagsterEvent):
                        raise dg.DagsterInvariantViolationError(f"a Dask step returned {event!r}")
                    yield event


@dg.executor(
    name="dask",
    config_schema={"cluster": {"existing": {"address": dg.StringSource}}},
    requirements=dg.multiple_process_executor_requirements(),
)
def run_scoped_dask_executor(init_context: dg.InitExecutorContext) -> RunScopedDaskExecutor:
    """Steps as Dask tasks on the existing cluster at `cluster.existing.address`, one task per step and run."""
    return RunScopedDaskExecutor(init_context.executor_config["cluster"]["existing"]["address"])
