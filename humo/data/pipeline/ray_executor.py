"""`humo data run --executor ray`: each stage a Ray Data map over its clips, on a local Ray cluster (default) or
the one at ``--ray-address``.

The map calls the same per-clip function as the local executor, `core.apply_stage(name, record, settings)`, in
Ray actors (``ActorPoolStrategy(size=workers)``, one CPU each: a stage that loads a model, captions, loads it
once per actor). Records travel as JSON text (they are JSON in the journals anyway, and their nested facts have
no fixed Arrow schema). The results stream back to this process as clips finish, which appends them to the
stage's journal and hands the kept records to the next stage exactly as the local executor does; files are
written by the actors under OUT, so on a real cluster OUT (and the input videos) must be at the same path on
every node (a shared file system). Resume, ``--force``, the summary and the manifest are the local executor's:
a run gives the same journals' records and a byte-identical manifest either way (tested).

A stage whose actor dies (a decoder crash, out of memory) fails its Ray job; the clips without a result are then
redone here one process each (`core.execute_isolated`), so the one that crashes is dropped ``crashed`` and the
others finish, as with ``--workers``.

On a 2-core machine a local cluster gets ``workers + 1`` logical CPUs: Ray Data's own read task needs one besides
the actors, and an actor pool that reserves every CPU deadlocks (measured: ray 2.60, 2 cores).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from humo.data.pipeline.core import Record, Settings, apply_stage, execute_isolated
from humo.errors import HumoError, first_line


def require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise HumoError(
            "--executor ray needs Ray Data: pip install -e '.[ray]' (ray[data] 2.60, about 500 MB with pyarrow and "
            "pandas; make install installs it)"
        )


@contextlib.contextmanager
def session(workers: int, address: str | None) -> Iterator[None]:
    """Connect to the Ray cluster at `address` (None: start a local one with ``workers + 1`` CPUs) for a run, and
    shut down what we started."""
    require_ray()
    import ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(**init_arguments(workers, address))
        except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError by version
            where = (
                "--executor ray: cannot start a local Ray cluster"
                if address is None
                else (f"--ray-address {address}: cannot connect to a Ray cluster")
            )
            raise HumoError(f"{where} ({first_line(e)})") from None
    try:
        import logging

        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no "execution finished" line per stage
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # our tqdm bar counts the clips as they come back
        context.print_on_execution_start = False
        yield
    finally:
        if started:
            ray.shutdown()


def init_arguments(workers: int, address: str | None) -> dict:
    """``ray.init``'s arguments: the cluster at `address`, or (None) a new local one with ``workers + 1`` CPUs.
    The local one is asked for by name (``address="local"``): left None, ``ray.init`` would join the cluster that
    a ``RAY_ADDRESS`` in the environment names, and refuse ``num_cpus`` there."""
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    if address is None:
        # a local cluster: workers inherit this process's environment (PYTHONPATH, OMP_NUM_THREADS)
        return {**kwargs, "address": "local", "num_cpus": workers + 1}
    return {**kwargs, "address": address}


class _StageMap:
    """One Ray actor's map function: a row ``{"i", "record"}`` (JSON) -> ``{"i", "outputs"}`` (JSON) + seconds."""

    def __init__(self, name: str, settings: Settings):
        self.name, self.settings = name, settings
        os.environ.setdefault("OMP_NUM_THREADS", "1")

    def __call__(self, row: dict) -> dict:
        outputs, seconds = apply_stage(self.name, json.loads(row["record"]), self.settings)
        return {"i": row["i"], "outputs": json.dumps(outputs, ensure_ascii=False), "seconds": seconds}


def execute(
    name: str, todo: list[Record], settings: Settings, workers: int
) -> Iterator[tuple[Record, list[Record], float]]:
    """The Ray executor's `core._execute`: yield ``(input, outputs, seconds)`` for every record of `todo` as the
    actors finish them."""
    import ray.data
    from ray.data import ActorPoolStrategy

    items = [{"i": i, "record": json.dumps(r, ensure_ascii=False)} for i, r in enumerate(todo)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))  # a block per clip: streamed one by one
    ds = ds.map(
        _StageMap,
        fn_constructor_args=(name, settings),
        compute=ActorPoolStrategy(size=max(1, min(workers, len(todo)))),
        num_cpus=1,
    )
    done: set[int] = set()
    try:
        for row in ds.iter_rows():
            i = int(row["i"])
            done.add(i)
            yield todo[i], json.loads(row["outputs"]), float(row["seconds"])
    except Exception as e:  # noqa: BLE001 - an actor died (RayActorError inside Ray Data's own error types)
        from humo.errors import warn

        rest = [r for i, r in enumerate(todo) if i not in done]
        warn(
            f"{name}: the Ray job failed ({first_line(e)}); redoing its {len(rest)} unfinished clip(s) one process each"
        )
        yield from execute_isolated(name, rest, settings)
