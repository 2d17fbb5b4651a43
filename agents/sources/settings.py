"""What the data layer reads of a run's data settings, as a structural type.

:class:`swarmgp.agents.run_config.DataConfig` satisfies :class:`DataSettings`; the data layer
names the protocol instead of importing the configuration, so ``agents/sources`` stays below
the agent core (it imports nothing of it).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["DataSettings"]


class DataSettings(Protocol):
    """The fields of ``DataConfig`` the data layer uses (read only)."""

    @property
    def data(self) -> str:
        """Data source URI: ``synthetic``, ``csv:PATH``, ..."""

    @property
    def agent_column(self) -> str | None:
        """Column naming the sensor (None: a seeded random split of rows)."""

    @property
    def inputs(self) -> tuple[str, ...] | None:
        """Input columns (None: every CSV column but the agent column and the target)."""

    @property
    def target(self) -> str | None:
        """Target column (None: the CSV header's last column)."""

    @property
    def time_column(self) -> str:
        """Time column."""

    @property
    def batches(self) -> int | None:
        """Batches per agent (None: all rows on tables, 5 on synthetic)."""

    @property
    def batch_size(self) -> int:
        """Rows per batch."""

    @property
    def holdout(self) -> str:
        """Held-out rows: ``"random"`` or ``"time"``."""

    @property
    def holdout_every(self) -> int:
        """K: one row in K (random) or every K-th day (time) is held out."""

    @property
    def order(self) -> str:
        """Order of an agent's rows on tables: ``"random"`` or ``"time"``."""

    @property
    def features(self) -> str | None:
        """Path of a declared FeatureConfig JSON."""

    @property
    def dim(self) -> int:
        """Synthetic: input dimension."""

    @property
    def groups(self) -> int | None:
        """Synthetic: distinct projections (None: min(agents, 8))."""

    @property
    def spread(self) -> float:
        """Synthetic: projection spread."""

    @property
    def noise(self) -> float:
        """Synthetic: observation noise std."""
