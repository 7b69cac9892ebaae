"""Hostile pipeline files: alias bombs, recursion, deep nesting, huge numbers, FIFOs, endless
devices. Each is exit 2 with a short message naming the problem, before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport.cli import main
from tests.conftest import make_class_folder


def _laughs(levels: int, width: int, where: str) -> str:
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\n{where}: *a{levels - 1}\n"


BOMBS = {
    "laughs_top_key": _laughs(9, 9, "stages"),
    "laughs_in_imgaug_args": _laughs(8, 10, "x") + "stages:\n  - imgaug:\n      - Affine: {rotate: *a7}\n",
    "laughs_in_mix": _laughs(10, 6, "mix"),
    "recursive_alias": "stages: &s [*s]\n",
    "recursive_mapping": "mix: &m {method: *m}\n",
    "deep_yaml": "stages: " + "[" * 500 + "]" * 500 + "\n",
    "deep_mapping": "seed: 1\nx: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
    "huge_int_seed": "seed: " + "9" * 4000 + "\n",
    "huge_int_param": "stages:\n  - keras: {rotation_range: " + "7" * 400 + "}\n",  # beyond a float
    "huge_shift": "stages:\n  - keras: {width_shift_range: " + "7" * 400 + "}\n",
    "long_string": "stages:\n  - " + "x" * 500_000 + ": {}\n",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("src") / "src", {"a": 2})


def _check(source: Path, config: Path, out: Path) -> str:
    res = CliRunner().invoke(main, ["export", str(source), str(out), "--config", str(config), "--workers", "1"])
    assert res.exit_code == 2, res.output[-2000:]
    assert res.output.startswith("Error: ") and len(res.output) < 2600
    assert not out.exists()
    return res.output


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_hostile_yaml_exits_2_with_a_short_message(source: Path, tmp_path: Path, name: str) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(BOMBS[name])
    out = _check(source, config, tmp_path / "out")
    expected = {"laughs_top_key": "more than 100000 values", "recursive_alias": "recursive",
                "recursive_mapping": "recursive", "deep_yaml": "nested", "huge_int_param": "out of range"}
    if name in expected:
        assert expected[name] in out


def test_deep_json_and_huge_json_numbers_exit_2(source: Path, tmp_path: Path) -> None:
    config = tmp_path / "p.json"
    config.write_text('{"stages": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested" in _check(source, config, tmp_path / "o1")
    config.write_text('{"seed": ' + "1" * 5000 + "}")
    assert "cannot parse pipeline file" in _check(source, config, tmp_path / "o2")


def test_config_that_is_a_fifo_a_device_or_too_big_exits_2(source: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _check(source, fifo, tmp_path / "o1")
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    assert "not a regular file" in _check(source, zero, tmp_path / "o2")
    big = tmp_path / "big.yaml"
    big.write_text("seed: 0\n" + "# padding\n" * 200_000)
    assert "larger than 1024 KiB" in _check(source, big, tmp_path / "o3")


def test_version_must_be_the_integer_1(source: Path, tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    for text in ("version: true\n", "version: 1.5\n", "version: '1'\n"):
        config.write_text(text)
        assert "version" in _check(source, config, tmp_path / "o")
