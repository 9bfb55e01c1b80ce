"""Predicting into Zarr on a Dask cluster: the workers classify tiles and write their chunks themselves.

:func:`gpuseg.stream.predict_to_zarr` (``client=``) and ``gpuseg predict
--scheduler`` come here. The model's :class:`~gpuseg.predictor.Predictor` and
each job's :class:`~gpuseg.tile_writer.TileWriter` are broadcast to the
workers once (a worker opens the image and the output array the first time it
writes a tile of them), and every tile without a done-marker is one task
calling :meth:`TileWriter.write <gpuseg.tile_writer.TileWriter.write>`, the
same code as in one process: the chunk is written, then its marker. Tasks are
submitted a few per worker thread at a time, as earlier ones finish. A task
whose worker dies is run again elsewhere by Dask; it skips a tile whose marker
exists, and rewrites a chunk whose marker is missing with the same bytes. A
run whose client, scheduler or workers are gone is resumed by running it
again: only tiles without a marker are computed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time

from .image_io import protocols

INSTALL_HINT = "pip install 'gpuseg[distributed]'"


def active_client(client=None):
    """``client``, else the active Dask client if ``distributed`` is imported and one is running, else ``None``."""
    if client is not None or "distributed" not in sys.modules:
        return client
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client running
        return None


@contextlib.contextmanager
def connect(scheduler: str):
    """A Dask client for a ``--scheduler`` value, closed (with any cluster it started) on exit.

    Parameters
    ----------
    scheduler : str
        ``"local:N"``: a ``LocalCluster`` of N worker processes of one thread
        each, on this machine. ``"local-cuda"``: dask-cuda's
        ``LocalCUDACluster``, one worker per visible GPU (``CUDA_VISIBLE_DEVICES``
        chooses which). Anything else: the address of a running scheduler
        (``tcp://host:8786``, or a scheduler file's address).

    Yields
    ------
    client : distributed.Client

    Raises
    ------
    RuntimeError
        ``distributed`` (or, for ``local-cuda``, ``dask-cuda``) is not installed.
    ValueError
        ``local:N`` with N not a positive integer.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError(f"Running on a Dask cluster needs dask.distributed: {INSTALL_HINT}") from None
    with contextlib.ExitStack() as stack:
        if scheduler.startswith("local:"):
            n = scheduler.partition(":")[2]
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--scheduler local:N needs a positive number of worker processes, got {scheduler!r}.")
            target = stack.enter_context(LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                                      dashboard_address=None))
        elif scheduler == "local-cuda":
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise RuntimeError("--scheduler local-cuda needs dask-cuda: pip install dask-cuda") from None
            target = stack.enter_context(LocalCUDACluster(dashboard_address=None))
        else:
            target = scheduler
        yield stack.enter_context(Client(target))


def write_tiles(client, jobs):
    """Classify and write the tiles left to do of prepared jobs on the cluster, all jobs at once.

    Tasks are submitted as earlier ones finish, about two per worker thread
    in flight (counted again every second, so workers that join later are
    used), so neither the client nor the scheduler ever holds a task per tile
    of a large grid.

    Parameters
    ----------
    client : distributed.Client
    jobs : list of gpuseg.stream.ZarrJob
        From :func:`gpuseg.stream.prepare_zarr`; their outputs and path inputs
        must be reachable from the workers (a shared filesystem, an object store).

    Yields
    ------
    n : int
        The number of tiles each task wrote (1, or 0 for a tile already marked
        when a retried task reached it), as the tasks finish, in any order.

    Raises
    ------
    ValueError
        A ``memory://`` output while the workers are other processes (each would write into its own memory).
    Exception
        The first task's error, as the worker raised it; the tiles written so far keep their markers.
    """
    from distributed import as_completed

    in_memory = [j.out for j in jobs if "memory" in protocols(j.writer.fs)]
    if in_memory and set(client.run(os.getpid).values()) != {os.getpid()}:
        raise ValueError(f"{in_memory[0]} is in this process's memory, which the cluster's worker processes cannot "
                         "write into: give a path or URL they share (a shared filesystem, s3://, gs://).")
    predictors, writers, live = {}, {}, set()
    pending = ((job, tile) for job in jobs for tile in job.todo)

    def submit(n: int) -> None:
        for job, tile in itertools.islice(pending, n):
            if job.model not in predictors:  # the model goes to every worker once
                predictors[job.model] = client.scatter(job.predictor, broadcast=True, hash=False)
            if id(job) not in writers:  # on every worker too: one that dies takes no copy with it
                writers[id(job)] = client.scatter(job.writer, broadcast=True, hash=False)
            future = client.submit(_write_tile, predictors[job.model], writers[id(job)], tile, pure=False)
            live.add(future)
            finished.add(future)

    finished = as_completed()
    window, counted = _window(client), time.monotonic()
    submit(window)
    try:
        for future in finished:
            live.discard(future)
            yield future.result()
            if time.monotonic() - counted > 1:
                window, counted = _window(client), time.monotonic()
            submit(window - len(live))
    finally:
        client.cancel(list(live))


def _window(client) -> int:
    """Tasks to keep in flight: two per worker thread, and a few while no worker has joined yet."""
    return max(4, 2 * sum(client.nthreads().values()))


def _write_tile(predictor, writer, tile) -> int:
    """One task: one tile classified and written, unless a marker says an earlier try finished it."""
    return sum(1 for _ in writer.write(predictor, [tile], skip_done=True))
