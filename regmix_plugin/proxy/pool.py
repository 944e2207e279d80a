"""Several proxies trained side by side on this machine: the evaluate and transfer stages.

:func:`train_proxies` trains a list of :class:`ProxyJob` either one after the other in this
process (``num_concurrent`` 1, the default) or in up to ``num_concurrent`` worker processes
(``spawn``: a fresh interpreter each, so no torch state is forked). A proxy's result does not
depend on how it was scheduled: each job carries its own seed and thread count, and the shared
evaluation caches are built under their file lock (:func:`regmix_plugin.proxy.data.cache_guard`).
Results come back in job order whatever order the jobs finish in.

In a worker process every log record, Python warning and byte written to stdout/stderr while a
job runs goes to the job's ``train.log`` (:data:`regmix_plugin.layout.LOG_FILE`) in its output
folder, so the console of the parent stays the parent's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from regmix_plugin.domains import Catalogue
from regmix_plugin.layout import LOG_FILE
from regmix_plugin.proxy.config import ProxyConfig

log = logging.getLogger(__name__)

#: The format of a worker's records in its jobs' ``train.log``.
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ProxyJob:
    """One proxy to train: its settings, mixture and folder."""

    proxy: ProxyConfig
    """The proxy section it trains with (its seed included)."""
    weights: dict[str, float]
    """The mixture: every domain of the catalogue, summing to 1."""
    mixture_id: str
    """The mixture's id (written into ``metrics.json``)."""
    out_dir: Path
    """The proxy's output folder."""
    label: str
    """What progress reports call it."""


#: Called with (number finished, job) when a job starts (finished count so far) and ends.
JobCallback = Callable[[int, ProxyJob, bool], None]


def train_proxies(
    jobs: Sequence[ProxyJob],
    catalogue: Catalogue,
    *,
    eval_cache: Path | None,
    num_concurrent: int = 1,
    on_event: JobCallback | None = None,
) -> list[dict[str, Any]]:
    """Train every job; return their metrics in job order.

    ``on_event(num_done, job, starting)`` is called before a job starts (in-process only; with
    workers, when it is handed to the pool) and after it finished. A job's failure is raised
    once the jobs already running have finished (their results are kept on disk, so a rerun
    resumes them); jobs not yet started are cancelled.
    """
    if num_concurrent <= 1 or len(jobs) <= 1:
        return _train_in_process(jobs, catalogue, eval_cache, on_event)
    return _train_in_workers(jobs, catalogue, eval_cache, num_concurrent, on_event)


def _train_in_process(
    jobs: Sequence[ProxyJob],
    catalogue: Catalogue,
    eval_cache: Path | None,
    on_event: JobCallback | None,
) -> list[dict[str, Any]]:
    from regmix_plugin.proxy.train import train_proxy

    out: list[dict[str, Any]] = []
    for n, job in enumerate(jobs):
        if on_event is not None:
            on_event(n, job, True)
        metrics = train_proxy(
            job.proxy, catalogue, job.weights, job.mixture_id, job.out_dir, eval_cache=eval_cache
        )
        out.append(metrics)
        if on_event is not None:
            on_event(n + 1, job, False)
    return out


def _train_in_workers(
    jobs: Sequence[ProxyJob],
    catalogue: Catalogue,
    eval_cache: Path | None,
    num_concurrent: int,
    on_event: JobCallback | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    workers = min(num_concurrent, len(jobs))
    log.info("training %d proxies, %d at a time in worker processes", len(jobs), workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: dict[Future[dict[str, Any]], int] = {}
        for i, job in enumerate(jobs):
            pending[pool.submit(_train_job, job, catalogue, eval_cache)] = i
            if on_event is not None and i < workers:
                on_event(0, job, True)
        done = 0
        failure: BaseException | None = None
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                exc = future.exception()
                if exc is not None:
                    if failure is None:
                        failure = exc
                        for other in pending:
                            other.cancel()
                    continue
                results[i] = future.result()
                done += 1
                if on_event is not None:
                    on_event(done, jobs[i], False)
            pending = {f: i for f, i in pending.items() if not f.cancelled()}
        if failure is not None:
            raise failure
    return [r for r in results if r is not None]


def _train_job(job: ProxyJob, catalogue: Catalogue, eval_cache: Path | None) -> dict[str, Any]:
    """A worker's job: train one proxy with everything it says sent to its ``train.log``."""
    from regmix_plugin.proxy.train import train_proxy

    job.out_dir.mkdir(parents=True, exist_ok=True)
    with _output_to(job.out_dir / LOG_FILE):
        return train_proxy(
            job.proxy, catalogue, job.weights, job.mixture_id, job.out_dir, eval_cache=eval_cache
        )


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send log records, warnings and file descriptors 1 and 2 to ``path`` (appended)."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    saved_handlers, saved_level = list(root.handlers), root.level
    for h in saved_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = (os.dup(1), os.dup(2))
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        root.removeHandler(handler)
        handler.close()
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
