"""Run a function on W gloo processes (one thread each) and collect what each rank returned."""

from __future__ import annotations

import os
import pickle
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(target, rank: int, world: int, folder: str, timeout_s: float, args: tuple) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        result = ("ok", target(rank, world, *args))
    except BaseException as err:  # reported to the test, which decides
        result = ("error", type(err).__name__, str(err), traceback.format_exc())
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(result, f)
    dist.destroy_process_group()


def run_ranks(
    target,
    world: int,
    folder: Path,
    *args,
    collective_timeout: float = 60.0,
    deadline: float = 240.0,
) -> list[tuple]:
    """``target(rank, world, *args)`` on ``world`` spawned processes; one result tuple per rank.

    Each result is ``("ok", value)`` or ``("error", type name, message, traceback)``; a rank that
    wrote nothing gives ``("missing",)``. Processes still alive after ``deadline`` seconds are
    killed and reported as ``("hung",)`` (the fault tests assert that none is).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_entry, args=(target, r, world, str(folder), collective_timeout, args))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    import time

    end = time.monotonic() + deadline
    hung = set()
    for r, p in enumerate(procs):
        p.join(max(end - time.monotonic(), 0.1))
        if p.is_alive():
            hung.add(r)
    for r in hung:
        procs[r].kill()
        procs[r].join()
    out = []
    for r in range(world):
        path = folder / f"rank{r}.pkl"
        if r in hung:
            out.append(("hung",))
        elif path.exists():
            with open(path, "rb") as f:
                out.append(pickle.load(f))
        else:
            out.append(("missing",))
    return out
