"""imgaug stage errors found at build time, not when an image draws them: string choices imgaug's
constructors do not check (Affine's `mode`, Resize's `interpolation`, ...), integers past imgaug's
int32 draws, and YAML lists imgaug rejects as tuples (with the forms the argument does take).
Through the CLI: exit 2, the message names the file, the key path and what is accepted, and nothing
is written to OUT; also when the step sits inside Sometimes / SomeOf, where a draw-time failure
used to skip records and exit 0. Plus: skimage's deprecation chatter stays off the terminal."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from augexport.cli import main
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.stages import imgaug_stage
from augexport.stages.imgaug_stage import ENUMS, INT_LIMIT, augmenter_classes
from tests.conftest import make_class_folder

REPO = Path(__file__).resolve().parents[1]
AFFINE_MODES = "constant, edge, symmetric, reflect, wrap"

CASES = [
    # (steps YAML, key path, words the message must contain)
    ("[{Affine: {rotate: 10, mode: refelct}}]", "stages[0].imgaug[0].Affine.mode",
     [f"'refelct' is not one of {AFFINE_MODES} (or ALL", "did you mean reflect?"]),
    ("[{Sometimes: {p: 0.2, then: [{Affine: {rotate: 10, mode: refelct}}]}}]",
     "stages[0].imgaug[0].Sometimes.then[0].Affine.mode", [f"is not one of {AFFINE_MODES}"]),
    ("[{SomeOf: {n: [0, 1], children: [Fliplr, {Rotate: {mode: mirror}}]}}]",
     "stages[0].imgaug[0].SomeOf.children[1].Rotate.mode", [f"'mirror' is not one of {AFFINE_MODES}"]),
    ("[{OneOf: {children: [{ShearX: {mode: {choice: [edge, refelct]}}}]}}]",
     "stages[0].imgaug[0].OneOf.children[0].ShearX.mode.choice[1]", [f"'refelct' is not one of {AFFINE_MODES};"]),
    ("[{Affine: {mode: {choice: [ALL, edge]}}}]", "stages[0].imgaug[0].Affine.mode.choice[0]",
     [f"'ALL' is not one of {AFFINE_MODES}"]),
    ("[{TranslateY: {px: 3, mode: 2}}]", "stages[0].imgaug[0].TranslateY.mode", [f"2 is not one of {AFFINE_MODES}"]),
    ("[{PiecewiseAffine: {scale: 0.03, mode: edg}}]", "stages[0].imgaug[0].PiecewiseAffine.mode",
     [f"'edg' is not one of {AFFINE_MODES}", "did you mean edge?"]),
    ("[{ElasticTransformation: {alpha: 5, sigma: 2, mode: [nearest, nearset]}}]",
     "stages[0].imgaug[0].ElasticTransformation.mode[1]", ["'nearset' is not one of constant, nearest, reflect, wrap"]),
    ("[{ElasticTransformation: {mode: edge}}]", "stages[0].imgaug[0].ElasticTransformation.mode",
     ["'edge' is not one of constant, nearest, reflect, wrap (or ALL"]),
    ("[{Resize: {size: 24, interpolation: cubci}}]", "stages[0].imgaug[0].Resize.interpolation",
     ["'cubci' is not one of nearest, linear, area, cubic, 0, 1, 2, 3", "did you mean cubic?"]),
    ("[{Resize: {size: 24, interpolation: {choice: [linear, 7]}}}]", "stages[0].imgaug[0].Resize.interpolation.choice[1]",
     ["7 is not one of nearest, linear, area, cubic, 0, 1, 2, 3"]),
    ("[{Resize: {size: 24, interpolation: [area, 1]}}]", "stages[0].imgaug[0].Resize.interpolation",
     ["mixes names and numbers", "accepted: names only or numbers only"]),
    ("[{Superpixels: {interpolation: {choice: [linear, cubic]}}}]", "stages[0].imgaug[0].Superpixels.interpolation",
     ["takes a single value, not a list; accepted: one of nearest, linear, area, cubic, 0, 1, 2, 3"]),
    ("[{UniformVoronoi: {interpolation: ALL}}]", "stages[0].imgaug[0].UniformVoronoi.interpolation",
     ["'ALL' is not one of nearest, linear"]),
    ("[{BlendAlphaSimplexNoise: {foreground: [Invert], aggregation_method: mean}}]",
     "stages[0].imgaug[0].BlendAlphaSimplexNoise.aggregation_method", ["'mean' is not one of min, max, avg"]),
    ("[{BlendAlphaFrequencyNoise: {foreground: [Invert], upscale_method: bilinear}}]",
     "stages[0].imgaug[0].BlendAlphaFrequencyNoise.upscale_method", ["'bilinear' is not one of nearest, linear, area, cubic"]),
    ("[{Pad: {px: 2, pad_mode: refelct}}]", "stages[0].imgaug[0].Pad.pad_mode",
     ["'refelct' is not one of constant, edge, linear_ramp", "did you mean reflect?"]),
    ("[{AddToHue: {from_colorspace: RBG}}]", "stages[0].imgaug[0].AddToHue.from_colorspace",
     ["'RBG' is not one of RGB, BGR, YCrCb, HSV, HLS, Lab, Luv, YUV, CIE;", "did you mean RGB"]),
    ("[{WithColorspace: {to_colorspace: GRAY, children: [Invert]}}]", "stages[0].imgaug[0].WithColorspace.to_colorspace",
     ["'GRAY' is not one of RGB, BGR"]),
    ("[{KMeansColorQuantization: {to_colorspace: [RGB, Lba]}}]",
     "stages[0].imgaug[0].KMeansColorQuantization.to_colorspace[1]", ["'Lba' is not one of RGB", "did you mean Lab?"]),
    # integers past imgaug's int32 draws
    ("[{Affine: {translate_px: 10000000000}}]", "stages[0].imgaug[0].Affine.translate_px",
     [f"10000000000 is out of range; accepted: integers in [-{INT_LIMIT}, {INT_LIMIT}]"]),
    ("[{Sometimes: {p: 0.1, then: [{Affine: {translate_px: {x: [0, 2147483647]}}}]}}]",
     "stages[0].imgaug[0].Sometimes.then[0].Affine.translate_px.x[1]", ["2147483647 is out of range"]),
    ("[{Add: {value: -3000000000}}]", "stages[0].imgaug[0].Add.value", ["-3000000000 is out of range"]),
    # YAML lists that imgaug rejects as tuples: the forms the argument takes
    ("[{Fliplr: {p: [0.2, 0.8]}}]", "stages[0].imgaug[0].Fliplr.p",
     ["got <class 'tuple'>", "a YAML list is an imgaug tuple (a 2-list [low, high] is a uniform range), which p does "
      "not take; accepted: one value (p: 0.2)"]),
    ("[{Affine: {order: [0, 1]}}]", "stages[0].imgaug[0].Affine.order",
     ["which order does not take; accepted: one value (order: 0) or {choice: [0, 1]} to pick one of them per image"]),
    ("[{Multiply: {mul: 1.2, per_channel: [0.2, 0.9]}}]", "stages[0].imgaug[0].Multiply.per_channel",
     ["which per_channel does not take; accepted: one value (per_channel: 0.2)"]),
    ("[{Affine: {mode: [edge, wrap]}}]", "stages[0].imgaug[0].Affine.mode",
     ["which mode does not take; accepted: one value (mode: 'edge') or {choice: ['edge', 'wrap']}"]),
    ("[{GaussianBlur: {sigma: [0.5, 1, 2]}}]", "stages[0].imgaug[0].GaussianBlur.sigma",
     ["which takes exactly 2 entries, not 3; accepted: one value (sigma: 0.5) or a 2-list range [0.5, 2]"]),
    ("[{CoarseDropout: {p: 0.1, size_px: [2, 3, 4]}}]", "stages[0].imgaug[0].CoarseDropout.size_px",
     ["which takes exactly 2 entries, not 3"]),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("imgaug-cfg") / "src", {"a": 2, "b": 2})


def _export(source: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["export", str(source), str(out), "--workers", "1", "--quiet", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


@pytest.mark.parametrize("steps,path,words", CASES, ids=[c[1].split("imgaug[0].")[1] for c in CASES])
def test_bad_imgaug_argument_exits_2_at_build(tmp_path: Path, source: Path, steps: str, path: str,
                                              words: list[str]) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"seed: 0\ncopies: 2\nstages:\n  - imgaug: {steps}\n")
    out = tmp_path / "out"
    code, output = _export(source, out, "--config", str(cfg))
    assert code == 2, output
    assert output.startswith(f"Error: {cfg}: {path}: "), output
    for w in words:
        assert w in output, (w, output)
    assert not out.exists() or not any(out.iterdir()), "something was written to OUT"


def _stage(steps: list) -> object:
    return build_pipeline({"stages": [{"imgaug": steps}]}).stages[0]


def _image(h: int = 40, w: int = 36) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 7 % 256, yy * 5 % 256, (xx + yy) * 3 % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("step", [
    {"Affine": {"rotate": 20, "mode": "ALL"}},
    {"Rotate": {"rotate": 20, "mode": {"choice": ["edge", "wrap", "symmetric"]}}},
    {"PiecewiseAffine": {"scale": 0.04, "mode": {"choice": ["edge", "reflect"]}}},
    {"ElasticTransformation": {"alpha": 5, "sigma": 2, "mode": ["nearest", "wrap"]}},
    {"ElasticTransformation": {"alpha": 5, "sigma": 2, "mode": "ALL"}},
    {"Resize": {"size": 24, "interpolation": "ALL"}},
    {"Resize": {"size": 24, "interpolation": ["area", "linear"]}},
    {"Resize": {"size": 24, "interpolation": {"choice": [0, 3]}}},
    {"Superpixels": {"max_size": 16, "interpolation": 3}},
    {"Pad": {"px": 2, "pad_mode": "ALL"}},
    {"CropAndPad": {"px": [-2, 2], "pad_mode": {"choice": ["constant", "linear_ramp"]}}},
    {"BlendAlphaSimplexNoise": {"foreground": ["Invert"], "aggregation_method": "ALL", "upscale_method": "ALL"}},
    {"KMeansColorQuantization": {"to_colorspace": ["HSV", "Lab"]}},
    {"UniformColorQuantization": {"to_colorspace": None}},
    {"WithColorspace": {"to_colorspace": "HSV", "from_colorspace": "BGR", "children": ["Invert"]}},
    {"Affine": {"translate_px": INT_LIMIT}},
    {"Affine": {"translate_px": [-INT_LIMIT, INT_LIMIT]}},
], ids=lambda s: next(iter(s)))
def test_accepted_forms_build_and_run(step: dict) -> None:
    stage = _stage([step])
    for seed in range(4):
        out = stage.apply(_image(), {"seed": seed})
        assert out.dtype == np.uint8 and out.ndim == 3


def _matching(classes: tuple[str, ...] | None, arg: str) -> list[str]:
    return [name for name, cls in sorted(augmenter_classes().items())
            if arg in imgaug_stage._init_params(cls)
            and (classes is None or {c.__name__ for c in cls.__mro__}.intersection(classes))]


def _args(name: str, arg: str, value: object) -> dict:
    from tests.test_imgaug import REQUIRED_ARGS

    args = {**REQUIRED_ARGS.get(name, {}), arg: value}
    if "max_size" in imgaug_stage._init_params(augmenter_classes()[name]):
        args["max_size"] = 16  # below the image size, so `interpolation` is used
    if name in ("UniformColorQuantization", "UniformColorQuantizationToNBits", "Posterize", "pillike.Posterize"):
        args.setdefault("to_colorspace", "HSV")  # so from_colorspace is used
    return args


@pytest.mark.parametrize("classes,arg,rule", ENUMS, ids=[f"{r[1]}-{(r[0] or ('any',))[0]}" for r in ENUMS])
def test_every_enum_rule_rejects_typos_and_every_accepted_value_runs(classes: tuple | None, arg: str,
                                                                      rule: imgaug_stage.Enum) -> None:
    names = _matching(classes, arg)
    assert names, "rule matches no accepted class"
    for name in names:
        with pytest.raises(ConfigError) as err:
            _stage([{name: _args(name, arg, "bogus")}])
        assert err.value.path == f"stages[0].imgaug[0].{name}.{arg}"
        for value in rule.values + (("ALL",) if rule.all_ok else ()):
            try:
                stage = _stage([{name: _args(name, arg, value)}])
            except ConfigError as exc:  # a class whose own constructor takes fewer (CLAHE: 5 colorspaces)
                assert "imgaug rejected" in str(exc) and exc.path.endswith(f".{arg}"), exc
                continue
            stage.apply(_image(), {"seed": 3})  # imgaug draws it without complaint


def test_enum_tables_match_imgaug() -> None:
    """The accepted values are imgaug 0.4.0's own (its private tables, read here only to check)."""
    from augexport.imgaug_compat import import_imgaug

    iaa = import_imgaug()
    import imgaug
    from imgaug.augmenters import geometric

    rules = {(c, a): r for c, a, r in ENUMS}
    assert set(rules[("Affine", "PiecewiseAffine"), "mode"].values) == set(geometric._AFFINE_MODE_SKIMAGE_TO_CV2)
    assert set(rules[("ElasticTransformation",), "mode"].values) == set(iaa.ElasticTransformation._MAPPING_MODE_SCIPY_CV2)
    assert set(rules[("Resize",), "interpolation"].values) == set(imgaug.imgaug.IMRESIZE_VALID_INTERPOLATIONS)
    assert set(rules[None, "from_colorspace"].values) == iaa.color.CSPACE_ALL - {"GRAY"}


def test_skimage_deprecations_are_silenced_only_around_the_augment_call() -> None:
    stage = _stage([{"PiecewiseAffine": {"scale": 0.03, "nb_rows": 3, "nb_cols": 3}},
                    {"Superpixels": {"p_replace": 0.3, "n_segments": 20}}])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        for seed in range(3):
            stage.apply(_image(48, 48), {"seed": seed})
        assert warnings.filters == before, "a global filter was left behind"
        with imgaug_stage._ignoring(stage._noise):
            warnings.warn("something else", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
    assert len(stage._noise) == 2 and _stage(["Fliplr"])._noise == ()


def test_export_prints_no_skimage_future_warnings(tmp_path: Path, source: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("seed: 1\ncopies: 1\nimage_size: 40\nstages:\n  - imgaug:\n"
                   "      - PiecewiseAffine: {scale: [0.01, 0.05], nb_rows: 3, nb_cols: 3}\n"
                   "      - Superpixels: {p_replace: 0.3, n_segments: 20}\n")
    res = subprocess.run([sys.executable, "-W", "always::FutureWarning", "-m", "augexport", "export", str(source),
                          str(tmp_path / "out"), "--workers", "1", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "FutureWarning" not in res.stderr and "deprecated" not in res.stderr, res.stderr[-2000:]
    assert "8 records out" in res.stderr + res.stdout
