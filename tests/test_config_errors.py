"""Pipeline-file errors through the CLI: exit 2 before any work, the message names the file, the
key path and what is accepted, and nothing is written to OUT."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport.cli import main
from tests.conftest import make_class_folder

CASES = [
    # (file name, file text, words the message must contain)
    ("p.yaml", "versio: 1\n", ["versio: unknown key", "accepted: version, seed", "did you mean version?"]),
    ("p.yaml", "version: 2\n", ["version: 2 is not supported", "accepted: 1"]),
    ("p.yaml", "seed: -1\n", ["seed: -1 is out of range", "accepted: [0, "]),
    ("p.yaml", "seed: abc\n", ["seed: expected an integer, got 'abc'"]),
    ("p.yaml", "copies: 2.5\n", ["copies: expected an integer, got 2.5"]),
    ("p.yaml", "copies: -1\n", ["copies: -1 is out of range"]),
    ("p.yaml", "include_original: maybe\n", ["include_original: expected true or false"]),
    ("p.yaml", "label_smoothing: 1.0\n", ["label_smoothing: 1.0 is out of range", "[0, 1)"]),
    ("p.yaml", "stages:\n  - cutot: {}\n", ["stages[0]: unknown stage 'cutot'", "accepted: ", "did you mean cutout?"]),
    ("p.yaml", "stages:\n  - cutout: {}\n  - tf_imag: []\n", ["stages[1]: unknown stage 'tf_imag'", "did you mean tf_image?"]),
    ("p.yaml", "stages:\n  - cutout: {size: 2}\n", ["stages[0].cutout.size: 2 is out of range", "(0, 1]"]),
    ("p.yaml", "stages:\n  - cutout: {size: big}\n", ["stages[0].cutout.size: expected a number, got 'big'"]),
    ("p.yaml", "stages:\n  - cutout: {sise: 0.2}\n", ["stages[0].cutout.sise: unknown key", "did you mean size?"]),
    ("p.yaml", "stages:\n  - cutout: {}\n    tf_image: []\n", ["stages[0]: each stage is a one-key mapping"]),
    ("p.yaml", "stages: {cutout: {}}\n", ["stages: expected a list of stages"]),
    ("p.yaml", "stages:\n  - tf_image:\n      - random_hue: {max_delta: 0.7}\n",
     ["stages[0].tf_image[0].random_hue.max_delta: 0.7 is out of range", "[0, 0.5]"]),
    ("p.yaml", "stages:\n  - tf_image:\n      - random_brightnes: {}\n",
     ["stages[0].tf_image[0]: unknown op 'random_brightnes'", "did you mean random_brightness"]),
    ("p.yaml", "image_size: 0\n", ["image_size: 0 is not a size", "1..16384"]),
    ("p.yaml", "image_size: [224, 160, 3]\n", ["image_size: [224, 160, 3] is not a size"]),
    ("p.yaml", "image_size: big\n", ["image_size: 'big' is not a size", "224x160"]),
    ("p.yaml", "mix: {method: cutmixx}\n", ["mix.method: 'cutmixx' is not accepted", "cutmix, mixup", "did you mean cutmix?"]),
    ("p.yaml", "mix: {alpha: 0}\n", ["mix.alpha: 0 is out of range; accepted: > 0"]),
    ("p.yaml", "mix: {method: mixup, beta: 1}\n", ["mix.beta: unknown key", "accepted: method, alpha, p"]),
    ("p.yaml", "mix: {p: 0.5}\ncopies: 0\n", ["mix: mixing applies to augmented copies", "copies >= 1"]),
    ("p.yaml", "copies: 0\ninclude_original: false\n", ["copies: copies is 0 and include_original is false"]),
    ("p.yaml", "stages: [unclosed\n", ["cannot parse pipeline file: line 2, column 1", "expected ',' or ']'"]),
    ("p.yaml", "stages:\n  - cutout: {size: 0.2\n  - tf_image: []\n", ["cannot parse pipeline file: line 3"]),
    ("p.yaml", "- cutout\n- tf_image\n", ["must be a mapping at the top level, got list"]),
    ("p.json", '{"version": 1,\n', ["cannot parse pipeline file", "line 2"]),
    ("p.json", '{"stages": [{"cutout": {"count": 0}}]}', ["stages[0].cutout.count: 0 is out of range"]),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("cfg") / "src", {"a": 1, "b": 1})


def _export(source: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["export", str(source), str(out), "--workers", "1", "--quiet", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def assert_stage_config_error(tmp_path: Path, stage: str, words: str) -> None:
    """`stages: [stage]` through the CLI: exit 2, the message is `FILE: stages[0].` + words, no
    traceback or raw overflow, nothing written to OUT."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"stages:\n  - {stage}\n")
    out = tmp_path / "out"
    code, output = _export(make_class_folder(tmp_path / "src", {"a": 1, "b": 1}), out, "--config", str(cfg))
    assert code == 2 and output.startswith(f"Error: {cfg}: stages[0].{words}"), output
    assert "Traceback" not in output and "Overflow" not in output
    assert not out.exists() or not any(out.iterdir()), "something was written to OUT"


@pytest.mark.parametrize("name,text,words", CASES, ids=[f"{i}-{c[1].splitlines()[0][:24]}" for i, c in enumerate(CASES)])
def test_pipeline_file_error_exits_2_naming_the_key(tmp_path: Path, source: Path, name: str, text: str,
                                                   words: list[str]) -> None:
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "out"
    code, output = _export(source, out, "--config", str(cfg))
    assert code == 2, output
    assert output.startswith(f"Error: {cfg}: "), output
    for w in words:
        assert w in output, (w, output)
    assert not out.exists() or not any(out.iterdir()), "something was written to OUT"


def test_missing_pipeline_file(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "out"
    code, output = _export(source, out, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml: cannot read pipeline file: No such file" in output, output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args,words", [
    (["--image-size", "12x"], ["--image-size: '12x' is not a size"]),  # errors about a flag name the flag
    (["--copies", "0", "--no-include-original"], ["copies is 0 and include_original is false"]),
    (["--seed", "-3"], ["seed: -3 is out of range"]),
    (["--label-smoothing", "2"], ["--label-smoothing: 2.0 is out of range"]),
])
def test_flag_overrides_are_validated_like_the_file(tmp_path: Path, source: Path, args: list[str], words: list[str]) -> None:
    out = tmp_path / "out"
    code, output = _export(source, out, *args)
    assert code == 2, output
    for w in words:
        assert w in output, (w, output)
    assert not out.exists() or not any(out.iterdir())


def test_valid_file_still_exports(tmp_path: Path, source: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("version: 1\ncopies: 1\nstages:\n  - tf_image: [random_flip_up_down]\n")
    code, output = _export(source, tmp_path / "out", "--config", str(cfg))
    assert code == 0, output
    assert "4 records out" in output
