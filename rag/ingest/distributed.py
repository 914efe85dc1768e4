"""Multi-GPU encoding for indexing, through ``accelerate`` when the run is launched with it.

``accelerate launch --multi_gpu -m rag.cli.index build ...`` (or ``torchrun
--nproc_per_node N -m rag.cli.index build ...``) starts one process per GPU. Every process reads the same deterministic passage stream; each batch is
split into contiguous slices, process *r* encodes slice *r* on its own GPU, and the
vectors are gathered on the main process, which alone writes to the store and saves
the progress (a Qdrant Edge shard has a single writer). A plain ``python`` run is
one process and never touches ``accelerate`` or ``torch.distributed``.
"""

from __future__ import annotations

import os
from typing import Any


class SingleProcess:
    """The one-process case: no communication."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    device = None

    def split(self, n: int) -> range:
        return range(n)

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast(self, obj: Any) -> Any:
        return obj

    def barrier(self) -> None:
        pass


class AccelerateProcesses(SingleProcess):
    """One of several processes started by ``accelerate launch`` / ``torchrun``."""

    def __init__(self) -> None:
        import torch
        from accelerate import PartialState

        # Without GPUs, processes talk over gloo on CPU (accelerate's MULTI_CPU), e.g. for tests.
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"}
        self.state = PartialState(cpu=cpu)
        self.num_processes = self.state.num_processes
        self.process_index = self.state.process_index
        self.is_main_process = self.state.is_main_process
        self.device = self.state.device

    def split(self, n: int) -> range:
        """This process's contiguous slice of ``range(n)`` (earlier slices one longer)."""
        base, extra = divmod(n, self.num_processes)
        start = self.process_index * base + min(self.process_index, extra)
        return range(start, start + base + (self.process_index < extra))

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in process order (on every process)."""
        from accelerate.utils import gather_object

        return gather_object([obj])

    def broadcast(self, obj: Any) -> Any:
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def barrier(self) -> None:
        self.state.wait_for_everyone()


def detect_processes() -> SingleProcess:
    """:class:`AccelerateProcesses` when launched as several processes and ``accelerate`` exists."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SingleProcess()
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:  # pragma: no cover - a core dependency
        raise RuntimeError("launched with several processes (WORLD_SIZE > 1) but `accelerate` is not installed")
    return AccelerateProcesses()
