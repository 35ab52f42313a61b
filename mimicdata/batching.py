"""``batches``: minibatches of windows from a :class:`~mimicdata.dataset.WindowDataset`.

>>> for batch in md.batches(ds, batch_size=4096, shuffle=True, seed=0, cache="auto", to="torch"):  # doctest: +SKIP
...     batch["qpos"]  # (4096, W, 36)

Each batch is one bulk gather (grouped by chunk), produced ``prefetch`` batches ahead by a background
thread, so decoding, remote reads and the host-to-device copy overlap the training step. The order of
windows depends only on ``seed`` and the epoch number: the same seed gives the same batches whatever
the cache, prefetch depth or output library.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mimicdata.dataset import WindowDataset
from mimicdata.errors import ValidationError
from mimicdata.gather import ChunkGather, MemoryGather
from mimicdata.windows import epoch_order

Weights = Sequence[float] | np.ndarray | Callable[[], Any] | None
CACHES = ("auto", "memory", "none")
TARGETS = ("numpy", "torch", "jax")


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable), or total memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _converter(to: str, device: Any, pin_memory: bool | None) -> Callable[[dict[str, np.ndarray]], dict[str, Any]]:
    if to == "numpy":
        if device is not None:
            raise ValidationError("device= needs to='torch' or to='jax'")
        return lambda batch: batch
    if to == "torch":
        import torch

        dev = torch.device(device) if device is not None else None
        pin = bool(pin_memory) if pin_memory is not None else (dev is not None and dev.type == "cuda")
        pin = pin and torch.cuda.is_available()  # pinning needs a CUDA runtime

        def to_torch(batch: dict[str, np.ndarray]) -> dict[str, Any]:
            out = {}
            for key, value in batch.items():
                tensor = torch.from_numpy(np.ascontiguousarray(value))
                if pin:
                    tensor = tensor.pin_memory()
                if dev is not None:
                    tensor = tensor.to(dev, non_blocking=pin)
                out[key] = tensor
            return out

        return to_torch
    if to == "jax":
        import jax

        return lambda batch: {key: jax.device_put(value, device) for key, value in batch.items()}
    raise ValidationError(f"to must be one of {TARGETS}, not {to!r}")


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class Batches:
    """An iterable of batches (see :func:`batches`); ``len()`` is the number of batches it yields."""

    def __init__(self, ds: WindowDataset, batch_size: int, *, shuffle: bool = True, seed: int | None = None,
                 prefetch: int = 2, cache: str = "auto", to: str = "numpy", device: Any = None,
                 pin_memory: bool | None = None, weights: Weights = None, weights_per: str | None = None,
                 drop_last: bool = False, epochs: int | None = 1, memory_budget: int | None = None,
                 chunk_cache_bytes: int = 256 << 20) -> None:
        if not isinstance(ds, WindowDataset):
            raise ValidationError(f"batches() takes a WindowDataset, not {type(ds).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValidationError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValidationError(f"prefetch must be an int >= 0, got {prefetch!r}")
        if cache not in CACHES:
            raise ValidationError(f"cache must be one of {CACHES}, not {cache!r}")
        if to not in TARGETS:
            raise ValidationError(f"to must be one of {TARGETS}, not {to!r}")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValidationError(f"epochs must be a positive int or None (forever), got {epochs!r}")
        if drop_last and len(ds) < batch_size:
            raise ValidationError(f"drop_last with batch_size={batch_size} leaves no batch: only {len(ds)} windows")
        self.ds, self.batch_size, self.shuffle, self.seed = ds, int(batch_size), bool(shuffle), seed
        self.prefetch, self.cache, self.to, self.device, self.pin_memory = prefetch, cache, to, device, pin_memory
        self.weights, self.weights_per, self.drop_last, self.epochs = weights, weights_per, bool(drop_last), epochs
        self.memory_budget = memory_budget
        self.chunk_cache_bytes = int(chunk_cache_bytes)
        self._probabilities(0)  # bad weights fail here, not in the background thread
        self._convert = _converter(to, device, pin_memory)
        self._entropy = np.random.SeedSequence(seed).entropy

    # ------------------------------------------------------------------------------------- planning
    def per_epoch(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        if self.epochs is None:
            raise TypeError("batches(..., epochs=None) is endless and has no length")
        return self.per_epoch() * self.epochs

    def _probabilities(self, epoch: int) -> np.ndarray | None:
        weights = self.weights() if callable(self.weights) else self.weights
        if weights is None:
            return None
        if hasattr(weights, "detach"):  # a torch tensor (e.g. AdaptiveMotionSampler.probabilities())
            weights = weights.detach().cpu().numpy()
        return self.ds.index.window_probabilities(weights, self.weights_per)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Window indices of every batch of epoch ``epoch`` (a function of the seed and the epoch only)."""
        rng = np.random.default_rng([self._entropy, epoch])
        order = epoch_order(len(self.ds), shuffle=self.shuffle, rng=rng, probabilities=self._probabilities(epoch))
        stop = self.per_epoch() * self.batch_size if self.drop_last else len(order)
        return [order[a:min(a + self.batch_size, stop)] for a in range(0, stop, self.batch_size)]

    def reader(self) -> MemoryGather | ChunkGather:
        """The gatherer ``cache`` selects; ``"auto"`` loads into memory when the fields fit the budget."""
        mode = self.cache
        if mode == "auto":
            budget = self.memory_budget if self.memory_budget is not None else available_memory() // 2
            mode = "memory" if self.ds.nbytes <= budget else "none"
        return self.ds.load() if mode == "memory" else self.ds.chunk_reader(self.chunk_cache_bytes)

    def _produce(self) -> Iterator[Any]:
        reader = self.reader()
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            for idx in self.plan(epoch):
                yield self._convert(self.ds.gather(idx, reader))
            epoch += 1

    # ------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Any]:
        if self.prefetch == 0:
            yield from self._produce()
            return
        slots: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for item in self._produce():
                    if not put(item):
                        return
                put(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                put(_Failure(exc))

        thread = threading.Thread(target=work, name="mimicdata-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = slots.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join()


def batches(ds: WindowDataset, batch_size: int, *, shuffle: bool = True, seed: int | None = None,
            prefetch: int = 2, cache: str = "auto", to: str = "numpy", device: Any = None,
            pin_memory: bool | None = None, weights: Weights = None, weights_per: str | None = None,
            drop_last: bool = False, epochs: int | None = 1, memory_budget: int | None = None,
            chunk_cache_bytes: int = 256 << 20) -> Batches:
    """Minibatches ``{field: (B, W, *shape), "segment": (B,), "frame": (B,)}`` of windows of ``ds``.

    Args:
        batch_size: windows per batch (the last batch of an epoch is smaller unless ``drop_last``).
        shuffle: a fresh permutation each epoch (every window exactly once per epoch); else in order.
        seed: the same seed gives the same batches; None draws a fresh one.
        prefetch: batches a background thread prepares ahead (0: none, read in the caller's thread).
        cache: ``"memory"`` loads the fields once; ``"none"`` reads chunks on demand through a bounded
            cache of ``chunk_cache_bytes``; ``"auto"`` loads when they fit ``memory_budget`` bytes
            (default: half the available memory).
        to: ``"numpy"``, ``"torch"`` (on ``device``; pinned host memory first for CUDA) or ``"jax"``
            (``jax.device_put`` to ``device``).
        weights: sampling weights per segment or per window (``weights_per`` says which when the
            length does not), or a callable returning them, read at the start of every epoch (so an
            adaptive sampler's changing probabilities take effect). With weights an epoch is
            ``len(ds)`` draws with replacement.
        epochs: epochs to yield; None: endless.
    """
    return Batches(ds, batch_size, shuffle=shuffle, seed=seed, prefetch=prefetch, cache=cache, to=to,
                   device=device, pin_memory=pin_memory, weights=weights, weights_per=weights_per,
                   drop_last=drop_last, epochs=epochs, memory_budget=memory_budget,
                   chunk_cache_bytes=chunk_cache_bytes)
