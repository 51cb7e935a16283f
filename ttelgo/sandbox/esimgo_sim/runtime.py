"""The Simulator: one object wiring config, catalogue, state, faults, limiter, stats and callbacks."""

import asyncio
import logging
import random
from pathlib import Path

from .callbacks import CallbackSender, Delivery
from .catalogue import Catalogue
from .clock import SimClock
from .config import SimConfig
from .faults import FaultInjector
from .generations import claim_generation
from .identifiers import IdentifierFactory
from .ratelimit import FixedWindowRateLimiter
from .state import Order, SimState, UsageEvent
from .stats import SimStats

logger = logging.getLogger(__name__)


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.catalogue = Catalogue.generate(config.seed)  # generated once: a reset keeps the same catalogue
        self.faults = FaultInjector(config.faults, config.seed)
        self.limiter = FixedWindowRateLimiter(config.rate_limit_per_second)
        self.stats = SimStats()
        self.callbacks = CallbackSender(
            config.api_key, config.callback_attempts, config.callback_backoff_s, config.callback_timeout_s
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.generation: int | None = None
        self._reset_state()

    def _claim_generation(self) -> None:
        """With a state folder, every start and every reset issues identifiers never issued before;
        without one, identifiers come from the seed alone (a reset issues the same ones again)."""
        if self.config.state_dir:
            self.generation = claim_generation(Path(self.config.state_dir))

    def _reset_state(self) -> None:
        self._claim_generation()
        ids = IdentifierFactory(random.Random(f"{self.config.seed}:ids"), self.generation)
        self.clock = SimClock()  # a reset puts it back on real time
        self.state = SimState(
            self.catalogue, self.config.organisation_name, self.config.initial_balance, ids, self.clock
        )
        self.callback_url: str | None = self.config.callback_url
        self.callback_log: list[Delivery] = []

    def reset(self) -> None:
        self._cancel_tasks()
        self._reset_state()
        self.faults.reset()
        self.limiter.reset(self.config.rate_limit_per_second)
        self.stats.reset()

    async def shutdown(self) -> None:
        tasks = self._cancel_tasks()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cancel_tasks(self) -> list[asyncio.Task[None]]:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        return tasks

    def is_async(self, bundle_count: int) -> bool:
        return bundle_count > self.config.async_order_threshold

    def complete_later(self, order: Order) -> None:
        task = asyncio.get_running_loop().create_task(self._complete(self.state, order.reference))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, state: SimState, reference: str) -> None:
        await asyncio.sleep(self.config.async_completion_delay_s)
        try:
            state.fulfil(reference)
        except Exception:  # a background failure must not kill the server; leave the order processing
            logger.exception("async completion of order %s failed", reference)

    async def deliver(self, events: list[UsageEvent]) -> list[Delivery]:
        deliveries = await self.callbacks.send_all(self.callback_url, events)
        for d in deliveries:
            self.stats.callbacks_attempted += 1
            self.stats.callbacks_delivered += int(d.delivered)
        self.callback_log.extend(deliveries)
        return deliveries
