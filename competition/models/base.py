"""What every family's [model] table has."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    family: str = "regression"  # the module in competition/models/ that builds the network
