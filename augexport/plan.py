"""The copy plan: which copies each source image gets, and which stages render each copy.

The worker asks the plan, for a source image of class `label`, "which copies?" and "which stages
for this copy?", then runs the one stage loop with the record's generator
`example_rng(seed, source_id, copy)`. An export's plan renders copy 0 as the original and copies
1..N with the pipeline's stages; a TTA set's plan renders copy k as variant k (a deterministic
TTA stage, or the training pipeline's stages for `random:N` variants).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .pipeline import Pipeline, build_pipeline
from .registry import Stage
from .stages.tta import variant_stage


class CopyPlan:
    """An export's copies: copy 0 = the original (no stages), copies 1..N = the pipeline's stages."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.seed = pipeline.seed
        self._copies = tuple(pipeline.copy_indices())

    def copies(self, label: int) -> tuple[int, ...]:
        return self._copies

    def stages(self, label: int, copy: int) -> Sequence[Stage]:
        return () if copy == 0 else self.pipeline.stages

    def variant(self, copy: int) -> str:
        return "original" if copy == 0 else "augmented"

    def total(self, labels: Sequence[int]) -> int:
        """Records planned for source images of these labels."""
        return sum(len(self.copies(label)) for label in labels)


class TtaPlan(CopyPlan):
    """A TTA set: copy k of every image is variant k."""

    def __init__(self, pipeline: Pipeline, variants: Sequence[dict[str, Any]]) -> None:
        super().__init__(pipeline)
        self.variants = list(variants)
        self._copies = tuple(range(len(self.variants)))
        self._stages = [self._build(v) for v in self.variants]

    @staticmethod
    def _build(entry: dict[str, Any]) -> Sequence[Stage]:
        if entry["kind"] == "random":
            return build_pipeline({"stages": entry["params"]["stages"]}).stages
        return (variant_stage(entry),)

    def stages(self, label: int, copy: int) -> Sequence[Stage]:
        return self._stages[copy]

    def variant(self, copy: int) -> str:
        return self.variants[copy]["name"]


def make_plan(pipeline: Pipeline, variants: Sequence[dict[str, Any]] = ()) -> CopyPlan:
    return TtaPlan(pipeline, variants) if variants else CopyPlan(pipeline)
