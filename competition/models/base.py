"""What every family's [model] table has."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    family: str = "regression"  # the module in competition/models/ that builds the network

    def check(self, source: str, key: str) -> None:
        """Refuse settings that are each in range but cannot build together (one line naming ``key``)."""
