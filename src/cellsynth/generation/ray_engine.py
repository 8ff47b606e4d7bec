"""Generation on a Ray cluster (``cellsynth generate --engine ray``).

The chunks of a :class:`~cellsynth.generation.chunks.ChunkPlan` become a ``ray.data`` Dataset of chunk numbers;
``map_batches`` hands them, one at a time, to a pool of :class:`ChunkWriter` actors, each of which loads the
saved model once (``cellsynth.load``) and writes its chunks' parts into the staging directory, each file under
a temporary name renamed when whole (:func:`cellsynth.data.io.write_part`). The driver swaps the staging
directory in once every part is there (:func:`cellsynth.generation.chunks.generate_dataset`). Chunks are seeded
from ``(seed, chunk)``, so the output is byte for byte the local engine's, whatever the number of workers.

Every worker must import the same cellsynth, read the model directory and write the output's parent directory:
on one machine that is given; on a cluster, a shared filesystem and cellsynth installed on every node.

A worker that dies is restarted by Ray and its chunk written again from the start (its half-written
temporary file is removed before the swap), up to :data:`WORKER_RETRIES` times; then the run fails with an error naming what happened,
the parts written so far are discarded with the staging directory, and a rerun starts from the first chunk.
"""

from __future__ import annotations

import importlib
import logging
import socket
import warnings
from pathlib import Path

from cellsynth.errors import CellsynthError, ConfigError, OutputError, one_line
from cellsynth.generation.chunks import ChunkPlan, check_workers, write_chunk

__all__ = ["CONNECT_TIMEOUT_S", "WORKER_RETRIES", "ChunkWriter", "write_chunks"]

#: How long to wait for a cluster at ``--address`` to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 5.0
#: How many times a worker that died (killed, out of memory, its node lost) is restarted and its chunk retried
#: before the run fails; Ray Data's default is forever, which turns a chunk too large for a worker's memory
#: into a run that never ends.
WORKER_RETRIES = 2


def import_ray():
    """``ray`` with ``ray.data``, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ConfigError(
            f'--engine ray needs Ray, which is not installed ({one_line(err)}): pip install "cellsynth[ray]"'
        ) from err
    return ray


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` unless something answers at ``address`` (``host:port`` of a cluster's head,
    or ``ray://host:port`` of its client server) within ``timeout`` seconds; ``None`` and ``"auto"`` (a local
    cluster, started or found) pass. Ray itself retries an unreachable address for a minute or more."""
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"--address {address!r}: give the cluster's head as HOST:PORT (e.g. 10.0.0.5:6379), "
            "ray://HOST:PORT (Ray Client) or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(
            f"--address {address}: no Ray cluster answers there ({err.strerror or type(err).__name__}, within "
            f"{timeout:g} s); start one with `ray start --head` on that machine, or check the host and port"
        ) from err


class ChunkWriter:
    """A Ray actor's work: load the model once, then write each chunk handed to it.

    A :class:`CellsynthError` of a chunk (bad options, say) comes back as data (its class and message): Ray
    passes a worker's exception on only as the text of its traceback, and the driver raises it as it was.
    """

    def __init__(self, model_dir: str, plan: ChunkPlan, staging: str):
        from cellsynth.generators import load

        self.generator = load(model_dir)
        self.plan = plan
        self.staging = staging

    def __call__(self, batch: dict) -> dict:
        errors, messages = [], []
        for chunk in batch["chunk"]:
            try:
                write_chunk(self.generator, self.plan, int(chunk), self.staging)
            except CellsynthError as err:
                errors.append(f"{type(err).__module__}:{type(err).__qualname__}")
                messages.append(str(err))
            else:
                errors.append("")
                messages.append("")
        return {"chunk": batch["chunk"], "error": errors, "message": messages}


def write_chunks(
    model_dir: Path, plan: ChunkPlan, staging: Path, *, address: str | None = None, workers: int | None = None
) -> None:
    """Write every chunk of ``plan`` into ``staging`` with a pool of Ray actors (module docstring).

    Uses the Ray session this process already has (``ray.init(...)`` before), else connects to ``address`` (or
    starts a local cluster when it is None) and shuts it down afterwards. ``workers``: actors in the pool
    (default: one per CPU of the cluster; never more than the chunks).
    """
    check_workers(workers)
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(
                f"--address {address or '(local)'}: cannot start or join Ray: {one_line(err)}"
            ) from err
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(
            logging.WARNING
        )  # its plan and timings are not the user's news
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = min(plan.chunks, workers or cpus)
        chunks = ray.data.from_items(
            [{"chunk": i} for i in range(plan.chunks)], override_num_blocks=plan.chunks
        )
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing actor options (max_restarts) to map_batches, to be removed in 2.64,
            # and names no replacement for them yet; until it does, this is the way to bound the restarts.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            written = chunks.map_batches(
                ChunkWriter,
                fn_constructor_kwargs={"model_dir": str(model_dir), "plan": plan, "staging": str(staging)},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_cpus=1,
                max_restarts=WORKER_RETRIES,
                max_task_retries=WORKER_RETRIES,
            ).take_all()
    except Exception as err:
        raise _explained(err) from err
    finally:
        if started:
            ray.shutdown()
    written.sort(key=lambda row: int(row["chunk"]))
    failed = next((row for row in written if row["error"]), None)
    if failed is not None:
        raise _rebuilt(str(failed["error"]), str(failed["message"]))
    done = [int(row["chunk"]) for row in written]
    if done != list(range(plan.chunks)):
        raise OutputError(f"Ray returned chunks {done[:5]}... for {plan.chunks} chunks; nothing was written")


def _rebuilt(name: str, message: str) -> CellsynthError:
    """The :class:`CellsynthError` a worker caught, from its class (``module:qualname``) and message."""
    module, _, qualname = name.partition(":")
    cls = getattr(importlib.import_module(module), qualname, None)
    if isinstance(cls, type) and issubclass(cls, CellsynthError):
        return cls(message)
    return CellsynthError(message)


def _explained(err: BaseException) -> CellsynthError:
    """The error a user sees for a failed Ray run: a cellsynth error raised in a worker as it was, anything
    else (a worker killed, out of memory, a lost node) named in one line."""
    seen, stack = set(), [err]
    while stack:
        cause = stack.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, CellsynthError) and not type(cause).__module__.startswith("ray"):
            return cause
        stack += [cause.__cause__, cause.__context__, getattr(cause, "cause", None)]
    what = type(err).__name__
    first = one_line(err).split(" Traceback")[0][:300]
    return OutputError(
        f"generation on Ray failed ({what}: {first}); the parts written so far were discarded and the output "
        "is unchanged: fix the cause (a killed worker: memory, or a node lost) and rerun, which starts again "
        "from the first chunk"
    )
