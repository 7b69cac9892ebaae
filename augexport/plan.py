"""The copy plan: which copies each source image gets, and which stages render each copy.

The engine asks the plan "which copies of this image?", the worker "which stages for this copy?",
then runs the one stage loop with the record's generator `example_rng(seed, source_id, copy)`.
An export's plan renders copy 0 as the original and copies 1..N with the pipeline's stages; a
`classes:` entry gives a class its own stages and its own number of copies (or a target count,
spread over the class's images in the seeded order). A TTA set's plan renders copy k as variant k
(a deterministic TTA stage, or the training pipeline's stages for `random:N` variants).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .classes import copies_per_image
from .pipeline import Pipeline, build_pipeline
from .registry import Stage
from .rng import sort_key
from .sources import SourceItem
from .stages.tta import variant_stage


class CopyPlan:
    """An export's copies: copy 0 = the original (no stages), copies 1..N = the pipeline's stages,
    both per class when the pipeline has `classes:`. `items` (the listing) is needed only to plan
    per-class copy counts (the engine's side); workers only ask for stages."""

    def __init__(self, pipeline: Pipeline, class_names: Sequence[str] = (), items: Iterable[SourceItem] = ()) -> None:
        self.pipeline = pipeline
        self.seed = pipeline.seed
        self.class_names = list(class_names)
        self._default = tuple(pipeline.copy_indices())
        self._stages = {i: pipeline.classes[name].stages_for(pipeline.stages)
                        for i, name in enumerate(self.class_names) if name in pipeline.classes}
        self._per_item = self._allocate(list(items)) if pipeline.classes else {}

    def _allocate(self, items: list[SourceItem]) -> dict[str, tuple[int, ...]]:
        """Per-item copies for the classes that set copies or target_count."""
        first = (0,) if self.pipeline.include_original else ()
        out: dict[str, tuple[int, ...]] = {}
        for label, name in enumerate(self.class_names):
            override = self.pipeline.classes.get(name)
            if override is None or (override.copies is None and override.target_count is None):
                continue
            members = sorted((it for it in items if it.label == label), key=lambda it: sort_key(self.seed, it.source_id))
            counts = copies_per_image(override, self.pipeline.copies, len(members), self.pipeline.include_original)
            for item, k in zip(members, counts, strict=True):
                out[item.source_id] = (*first, *range(1, k + 1))
        return out

    def copies(self, item: SourceItem) -> tuple[int, ...]:
        return self._per_item.get(item.source_id, self._default)

    def stages(self, label: int, copy: int) -> Sequence[Stage]:
        return () if copy == 0 else self._stages.get(label, self.pipeline.stages)

    def variant(self, copy: int) -> str:
        return "original" if copy == 0 else "augmented"

    def total(self, items: Iterable[SourceItem]) -> int:
        """Records planned for these source images."""
        return sum(len(self.copies(it)) for it in items)

    def class_report(self, items: Iterable[SourceItem]) -> dict[str, Any]:
        """What the manifest records of a per-class plan: each class's override and planned records."""
        planned = [0] * len(self.class_names)
        for it in items:
            planned[it.label] += len(self.copies(it))
        return {name: {**(self.pipeline.classes[name].to_spec() if name in self.pipeline.classes else {}),
                       "planned_records": planned[i]} for i, name in enumerate(self.class_names)}


class TtaPlan(CopyPlan):
    """A TTA set: copy k of every image is variant k."""

    def __init__(self, pipeline: Pipeline, variants: Sequence[dict[str, Any]]) -> None:
        super().__init__(pipeline)
        self.variants = list(variants)
        self._default = tuple(range(len(self.variants)))
        self._variant_stages = [self._build(v) for v in self.variants]

    @staticmethod
    def _build(entry: dict[str, Any]) -> Sequence[Stage]:
        if entry["kind"] == "random":
            return build_pipeline({"stages": entry["params"]["stages"]}).stages
        return (variant_stage(entry),)

    def stages(self, label: int, copy: int) -> Sequence[Stage]:
        return self._variant_stages[copy]

    def variant(self, copy: int) -> str:
        return self.variants[copy]["name"]


def make_plan(pipeline: Pipeline, variants: Sequence[dict[str, Any]] = (), class_names: Sequence[str] = (),
              items: Iterable[SourceItem] = ()) -> CopyPlan:
    return TtaPlan(pipeline, variants) if variants else CopyPlan(pipeline, class_names, items)
