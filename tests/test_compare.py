"""`augexport compare`: a tiny real run (few images, 1 epoch, 1 repeat, a 2-filter CNN) and its
outputs; the source-disjoint split; the usage errors, which come before any work (exit 2)."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augexport.cli import main
from augexport.compare.split import (
    folder_names,
    hash_fraction,
    materialise,
    split_items,
    write_digits,
)
from augexport.sources import SourceItem, SourceListing
from augexport.sources.folder import list_folder
from tests.conftest import make_class_folder
from tests.helpers import read_records

pytest.importorskip("keras")
pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "1", "--repeats", "1", "--filters", "2", "--batch-size", "8", "--image-size", "16",
        "--workers", "1", "--quiet"]


def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pipelines")
    files = {"plain": "copies: 0\n",
             "aug": "copies: 1\nstages:\n  - keras: {rotation_range: 10, width_shift_range: 0.1}\n"
                    "mix: {method: cutmix, alpha: 1.0, p: 0.5}\n",
             "bad": "copies: 1\nstages:\n  - keras: {rotation_rnage: 10}\n"}
    for name, text in files.items():
        (base / f"{name}.yaml").write_text(text)
    return {name: base / f"{name}.yaml" for name in files}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, pipelines: dict[str, Path]) -> Path:
    """A 3-class folder of 30 images, two variants, through the CLI."""
    base = tmp_path_factory.mktemp("compare")
    src = make_class_folder(base / "src", {"a": 10, "b": 10, "c": 10})
    out = base / "out"
    res = run_cli("compare", src, out, "--pipeline", pipelines["plain"], "--pipeline", f"cutmix={pipelines['aug']}",
                  "--val-fraction", "0.3", *TINY)
    assert res.exit_code == 0, res.output
    return out


def test_compare_writes_a_png_a_json_and_a_markdown_table(tiny_run: Path) -> None:
    with Image.open(tiny_run / "compare.png") as png:
        png.load()
        assert png.format == "PNG" and png.width > 300
    report = json.loads((tiny_run / "compare.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["plain", "cutmix"]
    for v in report["variants"]:
        assert len(v["val_accuracy_per_epoch"]) == 1 and len(v["val_accuracy_per_epoch"][0]) == 1
        assert 0.0 <= v["final_val_accuracy"]["mean"] <= 1.0
    plain, cutmix = report["variants"]
    assert plain["train_records"] == report["split"]["train_images"]  # copies 0: originals only
    assert cutmix["train_records"] == 2 * report["split"]["train_images"]  # original + 1 copy
    assert report["split"]["train_images"] + report["split"]["val_images"] == 30
    assert "| plain |" in (tiny_run / "compare.md").read_text()


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = [line.strip().strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}  # rows[0] is the header


def test_markdown_numbers_are_exactly_the_json_numbers(tiny_run: Path) -> None:
    report = json.loads((tiny_run / "compare.json").read_text())
    rows = _table_rows((tiny_run / "compare.md").read_text())
    assert set(rows) == {v["name"] for v in report["variants"]}
    for v in report["variants"]:
        mean, std, per, epochs, images, records, seconds = rows[v["name"]]
        acc = v["final_val_accuracy"]
        assert float(mean) == acc["mean"] and float(std) == acc["std"]
        assert [float(x) for x in per.split(",")] == acc["values"]
        assert (int(epochs), int(images), int(records)) == (v["epochs"], v["train_images"], v["train_records"])
        assert [float(x) for x in seconds.split("+")] == [v["seconds"]["export"], v["seconds"]["train"]]
        assert json.dumps(acc["mean"]) == mean  # the same spelling, not only the same value


def test_train_and_val_never_share_a_source_image(tiny_run: Path) -> None:
    data = tiny_run / "dataset"
    val = read_records(data, "val")
    assert val and all(r["copy"] == [0] and r["params"] == [b"[]"] for r in val)  # never augmented
    val_ids = {r["source_id"][0] for r in val}
    train_ids = []
    for split in ("train_plain", "train_cutmix"):
        records = read_records(data, split)
        ids = {r["source_id"][0] for r in records}
        partners = {r["mix_source_id"][0] for r in records} - {b""}
        assert not ids & val_ids and not partners & val_ids
        train_ids.append(ids)
    assert train_ids[0] == train_ids[1]  # every variant trains on the same source images
    assert any(r["mix_lambda"][0] < 1.0 for r in read_records(data, "train_cutmix"))


def _listing(ids: list[str], labels: list[int]) -> SourceListing:
    items = [SourceItem(source_id=s, label=lab, data=b"x") for s, lab in zip(ids, labels, strict=True)]
    return SourceListing("folder", "mem", "mem", ["a", "b"], items, "fp", [])


def test_split_is_a_seeded_hash_of_source_id_independent_of_order() -> None:
    ids = [f"{'ab'[i % 2]}/img_{i:04d}.png" for i in range(400)]
    labels = [i % 2 for i in range(400)]
    first = split_items(_listing(ids, labels), seed=0, val_fraction=0.25, train_per_class=None)
    order = list(range(400))
    random.Random(1).shuffle(order)
    again = split_items(_listing([ids[i] for i in order], [labels[i] for i in order]), seed=0, val_fraction=0.25,
                        train_per_class=None)
    val = {it.source_id for it in first.val}
    assert val == {it.source_id for it in again.val}
    assert val == {s for s in ids if hash_fraction(s, 0) < 0.25}
    assert 70 <= len(val) <= 130 and not val & {it.source_id for it in first.train}
    other = split_items(_listing(ids, labels), seed=1, val_fraction=0.25, train_per_class=None)
    assert {it.source_id for it in other.val} != val
    capped = split_items(_listing(ids, labels), seed=0, val_fraction=0.25, train_per_class=5)
    assert [it.label for it in capped.train].count(0) == 5 and len(capped.train) == 10
    assert {it.source_id for it in capped.val} == val  # the cap never moves an image into val


def test_tfds_classes_become_folders_in_index_order(tmp_path: Path) -> None:
    assert folder_names(["a", "b"]) == ["a", "b"]
    assert folder_names(["dog", "cat"]) == ["0_dog", "1_cat"]
    assert folder_names([f"c {i}" for i in range(11)])[10] == "10_c_10"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    items = [SourceItem("ds-train.tfrecord-0__3", 1, data=buf.getvalue()),
             SourceItem("ds-train.tfrecord-0__4", 0, data=b"\xff\xd8 a jpeg")]
    materialise(items, ["0_dog", "1_cat"], tmp_path / "t", from_folder=False)
    names = sorted(p.relative_to(tmp_path / "t").as_posix() for p in (tmp_path / "t").rglob("*.*"))
    assert names == ["0_dog/ds-train.tfrecord-0__4.jpg", "1_cat/ds-train.tfrecord-0__3.png"]
    assert (tmp_path / "t" / "1_cat" / "ds-train.tfrecord-0__3.png").read_bytes() == buf.getvalue()


def test_digits_source_is_sklearn_digits_as_32px_png_class_folders(tmp_path: Path) -> None:
    listing = list_folder(write_digits(tmp_path / "digits"))
    assert listing.class_names == [str(d) for d in range(10)] and len(listing.items) == 1797
    with Image.open(listing.items[0].path) as img:
        assert img.size == (32, 32) and img.mode == "L"


@pytest.mark.parametrize("args, flag", [
    (["--pipeline", "{plain}"], "--pipeline: 1 given"),
    (["--pipeline", "{plain}", "--pipeline", "{bad}"], "stages[0].keras.rotation_rnage"),
    (["--pipeline", "{plain}", "--pipeline", "missing.yaml"], "missing.yaml does not exist"),
    (["--pipeline", "{plain}", "--pipeline", "plain={aug}"], "two variants are named like 'plain'"),
    (["--pipeline", "{plain}", "--pipeline", "{aug}", "--val-fraction", "1.5"], "--val-fraction 1.5"),
    (["--epochs", "0"], "--epochs 0"),
    (["--image-size", "big"], "--image-size"),
    (["--pipeline", "{plain}", "--pipeline", "{aug}", "--split", "train[:10%]"], "--split 'train[:10%]' applies to tfds:"),
    (["--pipeline", "{plain}", "--pipeline", "{aug}", "--data-dir", "d"], "--data-dir 'd' applies to tfds:"),
])
def test_usage_errors_exit_2_naming_the_flag(tmp_path: Path, pipelines: dict[str, Path], args: list[str],
                                             flag: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    args = [a.format(**{k: str(v) for k, v in pipelines.items()}) for a in args]
    res = run_cli("compare", src, tmp_path / "out", *args)
    assert res.exit_code == 2
    assert flag in res.output and ("--pipeline" in res.output or flag.startswith("--"))
    assert not (tmp_path / "out").exists()  # reported before any work


@pytest.mark.parametrize("source, message", [
    ("no/such/folder", "SOURCE no/such/folder does not exist"),
    ("sklearn:iris", "SOURCE 'sklearn:iris' is not accepted"),
    ("tfds:no_such_dataset_here", "is neither a registered TFDS dataset"),
    ("npz:{tmp}/arrays.npz", "is not accepted by compare; accepted: a class-folder directory"),
    ("{tmp}/one", "compare trains a classifier, and it has 1 class (only); accepted: 2 or more"),
])
def test_an_unknown_source_exits_2(tmp_path: Path, source: str, message: str) -> None:
    make_class_folder(tmp_path / "one", {"only": 4})
    (tmp_path / "arrays.npz").write_bytes(b"")  # named, never read
    res = run_cli("compare", source.format(tmp=tmp_path), tmp_path / "out", "--quiet")
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_a_split_that_leaves_no_validation_image_makes_no_out(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 3})
    res = run_cli("compare", src, tmp_path / "new" / "out", "--val-fraction", "0.001", "--quiet")
    assert res.exit_code == 2 and "leaves no validation image" in res.output
    assert not (tmp_path / "new" / "out").exists()


def test_a_non_empty_out_needs_overwrite_and_overwrite_needs_a_compare_run(tmp_path: Path, tiny_run: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    res = run_cli("compare", src, foreign, "--quiet")
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = run_cli("compare", src, foreign, "--overwrite", "--quiet")
    assert res.exit_code == 2 and "holds no earlier compare run" in res.output
    assert (foreign / "keep.txt").read_text() == "mine"
    res = run_cli("compare", tiny_run / "split" / "train", tiny_run / "split" / "train" / "out", "--quiet")
    assert res.exit_code == 2 and re.search(r"OUT .* is inside SOURCE", res.output)


def test_a_tfds_split_becomes_disjoint_class_folders_with_the_same_labels(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    from augexport.api import open_source

    listing = open_source("tfds:sample_photos", split="train", data_dir=str(ROOT / "sample_tfds"), spool_dir=tmp_path)
    split = split_items(listing, seed=0, val_fraction=0.3, train_per_class=None)
    label_of = {it.source_id: it.label for it in listing.items}
    for name, items in (("train", split.train), ("val", split.val)):
        materialise(items, split.classes, tmp_path / name, from_folder=False)
    train, val = list_folder(tmp_path / "train"), list_folder(tmp_path / "val")
    assert train.class_names == val.class_names == listing.class_names == ["cat", "cup", "space"]
    assert len(train.items) + len(val.items) == len(listing.items) == 30
    for folder in (train, val):  # each file is the TFDS example's bytes under its own label
        for it in folder.items:
            sid = Path(it.source_id).stem
            assert folder.class_names[it.label] == listing.class_names[label_of[sid]]
    assert not {Path(i.source_id).stem for i in train.items} & {Path(i.source_id).stem for i in val.items}


@pytest.mark.parametrize("args, flag", [
    (["--filters", "100000"], "--filters 100000 is not accepted; accepted: an integer in [1, 1024]"),
    (["--learning-rate", "inf"], "--learning-rate inf is not accepted"),
])
def test_absurd_model_settings_exit_2(tmp_path: Path, args: list[str], flag: str) -> None:
    """--filters 100000 ran out of memory in TensorFlow (traceback); --learning-rate inf trained."""
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    res = run_cli("compare", src, tmp_path / "out", *args, "--quiet")
    assert res.exit_code == 2 and flag in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_mistakes_found_before_the_comparison_leave_out_as_it_was(tmp_path: Path, pipelines: dict[str, Path],
                                                                   tiny_run: Path) -> None:
    """SOURCE inside OUT (--overwrite deleted it), an empty SOURCE (ran the digits), a pipeline
    naming unknown classes (exit 2 after the exports), variants of different image sizes (trained at
    the first one's), an OUT that cannot be made (traceback)."""
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    (tmp_path / "cls.yaml").write_text("copies: 1\nclasses:\n  nosuch: {copies: 2}\n")
    (tmp_path / "s16.yaml").write_text("copies: 0\nimage_size: [16, 16]\n")
    (tmp_path / "s32.yaml").write_text("copies: 0\nimage_size: [32, 32]\n")
    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in tiny_run.iterdir())
    cases = [
        ([tiny_run / "split" / "train", tiny_run, "--overwrite"], "is inside OUT"),
        (["", tmp_path / "out"], "SOURCE '' is empty"),
        ([src, tmp_path / "out", "--pipeline", pipelines["plain"], "--pipeline", tmp_path / "cls.yaml"],
         "unknown class name(s) 'nosuch'"),
        ([src, tmp_path / "out", "--pipeline", tmp_path / "s16.yaml", "--pipeline", tmp_path / "s32.yaml"],
         "the variants' image_size differ (s16: 16x16, s32: 32x32)"),
        ([src, tmp_path / "afile" / "out"], "is a file, not a directory"),
    ]
    for args, needle in cases:
        res = run_cli("compare", *args, "--quiet")
        assert res.exit_code == 2 and needle in res.output, (args, res.output)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tiny_run.iterdir()) == before


def test_a_split_found_unusable_inside_out_puts_an_earlier_run_back(tmp_path: Path) -> None:
    """The digits are written into OUT before they are split: a --val-fraction that leaves no
    validation image deleted an earlier run's results (--overwrite), or left 1,797 PNGs in an
    empty OUT."""
    pytest.importorskip("sklearn")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("compare", empty, "--val-fraction", "0.0001", "--quiet")
    assert res.exit_code == 2 and "leaves no validation image" in res.output
    assert list(empty.iterdir()) == []
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / ".augexport-compare").write_text("x")
    (earlier / "compare.json").write_text('{"earlier": true}')
    (earlier / "mine.txt").write_text("mine")
    res = run_cli("compare", earlier, "--val-fraction", "0.0001", "--overwrite", "--quiet")
    assert res.exit_code == 2
    assert sorted(p.name for p in earlier.iterdir()) == [".augexport-compare", "compare.json", "mine.txt"]
    assert (earlier / "compare.json").read_text() == '{"earlier": true}'


def test_a_split_with_no_readable_record_fails_naming_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            (src / cls / f"{i}.png").write_bytes(b"")  # every image unreadable
    res = run_cli("compare", src, tmp_path / "out", "--val-fraction", "0.5", *TINY)
    assert res.exit_code == 1 and "split 'val'" in res.output and "has no readable record" in res.output, res.output


def test_an_interrupt_while_the_source_is_read_into_out_puts_out_back(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport.compare.experiment import Experiment

    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / ".augexport-compare").write_text("x")
    (earlier / "compare.json").write_text('{"earlier": true}')

    def interrupted(self: Experiment, listing: object = None) -> None:
        (self.out / "split").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "prepare", interrupted)
    res = CliRunner().invoke(main, ["compare", str(src), str(earlier), "--overwrite", "--quiet"])
    assert res.exit_code == 130 and "Interrupted: OUT is as it was." in res.output, res.output
    assert sorted(p.name for p in earlier.iterdir()) == [".augexport-compare", "compare.json"]
    assert (earlier / "compare.json").read_text() == '{"earlier": true}'
