"""The engine's plan: seeded record order per block, mixing partners, the block walk, resume skips."""

from __future__ import annotations

import pytest

from augexport.engine import (
    BLOCK_ITEMS,
    Emitted,
    block_records,
    blocks_after,
    order_items,
    plan_blocks,
    plan_export,
)
from augexport.pipeline import build_pipeline
from augexport.plan import CopyPlan
from augexport.rng import example_rng
from augexport.sources import SourceItem
from augexport.stages.mix import pick_partner, wants_mix
from augexport.worker import Partner, RecordOut, UnitOut


def _items(n: int) -> list[SourceItem]:
    return [SourceItem(f"c/{i}.png", i % 3, path=f"/x/{i}.png") for i in range(n)]


@pytest.mark.parametrize("copies,include_original,n", [(1, True, 5), (3, False, 64), (4, True, 70), (2, True, 1)])
def test_partner_planning_equals_the_list_based_reference(copies: int, include_original: bool, n: int) -> None:
    pipeline = build_pipeline({"copies": copies, "include_original": include_original, "seed": 3,
                               "mix": {"method": "cutmix", "p": 0.7}})
    ordered = order_items(_items(n), 3, True)
    for block in plan_blocks(ordered, CopyPlan(pipeline), pipeline.mix, True):
        chunk = [u.item for u in block.units]
        augmented = [(i, c) for i in range(len(chunk)) for c in pipeline.copy_indices() if c > 0]
        for i, c in augmented:
            rng = example_rng(3, chunk[i].source_id, c, "mix")
            expected = None
            if wants_mix(rng, 0.7):
                candidates = [(j, c2) for j, c2 in augmented if j != i]
                if candidates:
                    j, c2 = candidates[pick_partner(rng, len(candidates))]
                    expected = [Partner(0, chunk[j], c2)]
            assert block.units[i].partners.get(c) == expected


def test_blocks_cover_every_record_once_in_a_seeded_order() -> None:
    pipeline = build_pipeline({"copies": 2, "seed": 9})
    blocks = list(plan_export(_items(150), CopyPlan(pipeline), None, True))
    assert [len(b.units) for b in blocks] == [BLOCK_ITEMS, BLOCK_ITEMS, 150 - 2 * BLOCK_ITEMS]
    assert [b.start for b in blocks] == [0, BLOCK_ITEMS * 3, BLOCK_ITEMS * 6]
    for b in blocks:
        assert sorted(b.order) == sorted((i, c) for i in range(len(b.units)) for c in (0, 1, 2))
        assert b.order != sorted(b.order)  # permuted
    again = list(plan_export(_items(150), CopyPlan(pipeline), None, True))
    assert [b.order for b in again] == [b.order for b in blocks]
    unshuffled = list(plan_export(_items(150), CopyPlan(pipeline), None, False))
    assert [u.item.source_id for u in unshuffled[0].units] == [f"c/{i}.png" for i in range(BLOCK_ITEMS)]


def test_blocks_after_skips_only_fully_written_blocks() -> None:
    pipeline = build_pipeline({"copies": 1})
    blocks = list(plan_export(_items(130), CopyPlan(pipeline), None, True))  # 128 + 128 + 4 records
    assert [b.index for b in blocks_after(blocks, -1)] == [0, 1, 2]
    assert [b.index for b in blocks_after(blocks, 126)] == [0, 1, 2]
    assert [b.index for b in blocks_after(blocks, 127)] == [1, 2]
    assert [b.index for b in blocks_after(blocks, 255)] == [2]


def test_block_walk_yields_failures_then_records_in_planned_order() -> None:
    pipeline = build_pipeline({"copies": 1})
    block = next(plan_blocks(_items(3), CopyPlan(pipeline), None, True))
    results = []
    for unit in block.units:
        if unit.item.source_id == "c/1.png":
            results.append(UnitOut(unit.item.source_id, [], "broken"))
        else:
            results.append(UnitOut(unit.item.source_id, [RecordOut(c, f"{unit.item.source_id}#{c}".encode(), 0, False, None)
                                                         for c in unit.copies]))
    out = list(block_records(block, results))
    assert [o.error for o in out if not isinstance(o, Emitted)] == ["broken"]
    emitted = [o for o in out if isinstance(o, Emitted)]
    assert [e.planned_index for e in emitted] == sorted(e.planned_index for e in emitted)
    expected = [f"{block.units[i].item.source_id}#{c}".encode() for i, c in block.order
                if block.units[i].item.source_id != "c/1.png"]
    assert [e.framed for e in emitted] == expected
