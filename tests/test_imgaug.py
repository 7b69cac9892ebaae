"""imgaug stage: every accepted augmenter runs on numpy 2, results depend only on the per-example
seed, the stage equals imgaug run directly with that seed, and exports are byte-identical across
worker counts and batch sizes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from augexport import api
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.stages.imgaug_stage import EXCLUDED, augmenter_classes, run_seeded

REPO = Path(__file__).resolve().parents[1]
_INVERT = {"foreground": ["Invert"]}

#: Minimal arguments (spec form) for classes without usable defaults.
REQUIRED_ARGS: dict[str, dict] = {
    "AssertShape": {"shape": [None, None, None, 3]},
    "BlendAlpha": _INVERT,
    "BlendAlphaElementwise": _INVERT,
    "BlendAlphaFrequencyNoise": _INVERT,
    "BlendAlphaHorizontalLinearGradient": _INVERT,
    "BlendAlphaVerticalLinearGradient": _INVERT,
    "BlendAlphaSimplexNoise": _INVERT,
    "BlendAlphaSomeColors": _INVERT,
    "BlendAlphaCheckerboard": {"nb_rows": 2, "nb_cols": 3, **_INVERT},
    "BlendAlphaRegularGrid": {"nb_rows": 2, "nb_cols": 3, **_INVERT},
    "CenterCropToAspectRatio": {"aspect_ratio": 1.0},
    "CenterPadToAspectRatio": {"aspect_ratio": 1.0},
    "CropToAspectRatio": {"aspect_ratio": 1.0},
    "PadToAspectRatio": {"aspect_ratio": 1.0},
    "CenterCropToFixedSize": {"width": 24, "height": 24},
    "CenterPadToFixedSize": {"width": 48, "height": 48},
    "CropToFixedSize": {"width": 24, "height": 24},
    "PadToFixedSize": {"width": 48, "height": 48},
    "CenterCropToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "CenterPadToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "CropToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "PadToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "CenterCropToPowersOf": {"width_base": 2, "height_base": 2},
    "CenterPadToPowersOf": {"width_base": 2, "height_base": 2},
    "CropToPowersOf": {"width_base": 2, "height_base": 2},
    "PadToPowersOf": {"width_base": 2, "height_base": 2},
    "ChangeColorspace": {"to_colorspace": "HSV"},
    "WithColorspace": {"to_colorspace": "HSV", "children": [{"Add": {"value": 10}}]},
    "CloudLayer": {"intensity_mean": [196, 255], "intensity_freq_exponent": [-2.0, -1.0],
                   "intensity_coarse_scale": 10, "alpha_min": 0, "alpha_multiplier": [0.5, 1.0],
                   "alpha_size_px_max": [64, 128], "alpha_freq_exponent": [-2.0, -1.0],
                   "sparsity": [1.0, 1.4], "density_multiplier": [0.8, 1.5]},
    "RainLayer": {"density": [0.03, 0.14], "density_uniformity": [0.8, 1.0], "drop_size": [0.01, 0.02],
                  "drop_size_uniformity": [0.2, 0.5], "angle": [-15, 15], "speed": [0.04, 0.2],
                  "blur_sigma_fraction": [0.001, 0.001]},
    "SnowflakesLayer": {"density": [0.005, 0.075], "density_uniformity": [0.3, 0.9], "flake_size": [0.2, 0.7],
                        "flake_size_uniformity": [0.4, 0.8], "angle": [-30, 30], "speed": [0.007, 0.03],
                        "blur_sigma_fraction": [0.0001, 0.001]},
    "KeepSizeByResize": {"children": [{"Crop": {"px": 4}}]},
    "OneOf": {"children": ["Fliplr", "Flipud"]},
    "WithPolarWarping": {"children": [{"Affine": {"translate_px": 3}}]},
    "RemoveCBAsByOutOfImageFraction": {"fraction": 0.5},
    "ReplaceElementwise": {"mask": 0.1, "replacement": 0},
    "Resize": {"size": 24},
}

#: Every augmenter the imgaug tutorials this product grew from name, with the arguments they use.
SEED_STEPS = [
    {"Fliplr": {"p": 0.5}},
    {"Flipud": {"p": 0.5}},
    {"Crop": {"percent": [0, 0.1]}},
    {"CropAndPad": {"percent": [-0.1, 0.1], "pad_mode": {"choice": ["constant", "edge"]}}},
    {"Affine": {"rotate": [-30, 30], "scale": {"x": [0.8, 1.2], "y": [0.8, 1.2]}, "shear": [-10, 10],
                "translate_percent": {"x": [-0.1, 0.1], "y": [-0.1, 0.1]}}},
    {"Multiply": {"mul": [0.8, 1.2], "per_channel": 0.2}},
    {"LinearContrast": {"alpha": [0.75, 1.5]}},
    {"MultiplyAndAddToBrightness": {"mul": [0.5, 1.5], "add": [-30, 30]}},
    {"Grayscale": {"alpha": [0.0, 1.0]}},
    {"AddToHueAndSaturation": {"value": [-20, 20]}},
    {"GaussianBlur": {"sigma": [0.0, 3.0]}},
    {"AdditiveGaussianNoise": {"scale": [0, 12.75], "per_channel": 0.5}},
    {"CoarseDropout": {"p": [0.0, 0.05], "size_percent": [0.02, 0.25]}},
    {"Cutout": {"nb_iterations": [1, 3], "size": 0.2, "fill_mode": "gaussian"}},
    {"ElasticTransformation": {"alpha": [0, 40], "sigma": [4, 6]}},
    {"CLAHE": {}},
    {"PerspectiveTransform": {"scale": [0.01, 0.1]}},
    {"JpegCompression": {"compression": [70, 99]}},
    {"RandAugment": {"n": 2, "m": [6, 12]}},
    {"pillike.Autocontrast": {"cutoff": 2}},
]


def _image(h: int = 32, w: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth image with some structure (gradients + a square), so geometric ops change it."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // (h + w)], -1)
    img[h // 4 : h // 2, w // 4 : w // 2] = 200
    noise = np.random.default_rng(seed).integers(0, 20, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _stage(steps: list) -> object:
    return build_pipeline({"stages": [{"imgaug": steps}]}).stages[0]


def _check_seeded(stage: object, images: list[np.ndarray]) -> None:
    """Output is uint8 HxWxC, input untouched, and equal for equal seeds whatever ran in between."""
    import imgaug

    firsts = []
    for i, img in enumerate(images):
        before = img.copy()
        out = stage.apply(img, {"seed": 1000 + i})
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert np.array_equal(img, before), "input modified in place"
        firsts.append(out)
    imgaug.random.seed(12345)  # global RNG state must not matter
    stage.apply(images[0], {"seed": 7})
    for i, img in enumerate(reversed(images)):
        j = len(images) - 1 - i
        assert np.array_equal(stage.apply(img, {"seed": 1000 + j}), firsts[j]), "depends on call history"


def sweep_names() -> list[str]:
    return sorted(augmenter_classes())


@pytest.mark.parametrize("name", sweep_names())
def test_every_accepted_augmenter_runs_deterministically(name: str) -> None:
    stage = _stage([{name: REQUIRED_ARGS.get(name, {})}])
    _check_seeded(stage, [_image(32, 40, s) for s in range(3)])
    img = _image(32, 40, 9)
    for seed in (5, 2**62 + 3):  # the stage's fast reseed and call == imgaug's seed_ and __call__
        assert np.array_equal(stage.apply(img, {"seed": seed}), run_seeded(stage.augmenter, img, seed))


def _rng_states(aug: object) -> list:
    from imgaug.augmenters.meta import Augmenter

    state = aug.random_state.generator.bit_generator.state
    out = [(type(aug).__name__, state["state"]["state"].tolist(), state["has_uint32"], state["uinteger"])]
    for lst in aug.get_children_lists():
        for child in ([lst] if isinstance(lst, Augmenter) and lst is not aug else lst):
            out.extend(_rng_states(child))
    return out


def test_tree_seeder_sets_every_generator_as_seed_does() -> None:
    from augexport.imgaug_compat import TreeSeeder

    stage = _stage([
        {"SomeOf": {"n": [1, 2], "random_order": True, "children": [{"Multiply": {"mul": [0.8, 1.2]}}, "CLAHE"]}},
        {"Sometimes": {"p": 0.5, "then": [{"Affine": {"scale": [0.8, 1.2]}}], "else": ["Grayscale"]}},
        "MultiplyAndAddToBrightness",
        {"WithColorspace": {"to_colorspace": "HSV", "children": [{"WithChannels": {"channels": 0, "children": ["Invert"]}}]}},
        {"OneOf": {"children": ["Fliplr", {"Sequential": {"children": ["Flipud"], "random_order": True}}]}},
    ])
    aug, seeder = stage.augmenter, TreeSeeder(stage.augmenter)
    for seed in (0, 1, 77, 2**31, 2**63 - 2):
        aug.seed_(seed)
        expected = _rng_states(aug)
        seeder(seed)
        assert _rng_states(aug) == expected
        assert len(expected) > 15


def test_sweep_covers_imgaug_and_pillike() -> None:
    names = sweep_names()
    assert len(names) > 150
    assert "pillike.Autocontrast" in names and "ElasticTransformation" in names and "RandAugment" in names
    assert not set(EXCLUDED) & set(names)


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_classes_are_refused_with_reason(name: str) -> None:
    with pytest.raises(ConfigError, match=r"stages\[0\]\.imgaug\[0\]: unknown imgaug augmenter"):
        _stage([{name: {}}])


@pytest.mark.parametrize("step", SEED_STEPS, ids=lambda s: next(iter(s)))
def test_seed_augmenters_work_and_change_images(step: dict) -> None:
    stage = _stage([step])
    images = [_image(32, 40, s) for s in range(3)]
    _check_seeded(stage, images)
    outs = [stage.apply(images[0], {"seed": s}) for s in range(8)]
    assert any(not np.array_equal(o, images[0]) for o in outs), "never changed the image"


def test_stage_equals_imgaug_run_directly_with_the_seed() -> None:
    from augexport.imgaug_compat import import_imgaug

    iaa = import_imgaug()
    stage = _stage([
        {"Fliplr": {"p": 0.5}},
        {"GaussianBlur": {"sigma": [0.0, 1.0], "p": 0.3}},
        {"SomeOf": {"n": [1, 2], "children": [{"Multiply": {"mul": [0.8, 1.2]}}, "CLAHE"]}},
        {"Affine": {"rotate": [-20, 20], "mode": {"choice": ["edge", "reflect"]}}},
        {"Sometimes": {"p": 0.5, "then": [{"ElasticTransformation": {"alpha": 20, "sigma": 4}}], "else": ["Grayscale"]}},
    ])
    direct = iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Sometimes(0.3, iaa.GaussianBlur(sigma=(0.0, 1.0))),
        iaa.SomeOf((1, 2), [iaa.Multiply((0.8, 1.2)), iaa.CLAHE()]),
        iaa.Affine(rotate=(-20, 20), mode=["edge", "reflect"]),
        iaa.Sometimes(0.5, [iaa.ElasticTransformation(alpha=20, sigma=4)], [iaa.Grayscale()]),
    ])
    img = _image(48, 40)
    rng = np.random.default_rng(5)
    outs = []
    for _ in range(6):
        params = stage.sample(rng, img.shape)
        seed = params["seed"]
        direct.seed_(seed)
        expected = direct(image=img)
        got = stage.apply(img, params)
        assert np.array_equal(got, expected)
        assert np.array_equal(got, run_seeded(direct, img, seed))
        outs.append(got)
    assert len({o.tobytes() for o in outs}) > 1


def test_p_wraps_in_sometimes_unless_class_has_p() -> None:
    from augexport.imgaug_compat import import_imgaug

    iaa = import_imgaug()
    wrapped = _stage([{"GaussianBlur": {"sigma": 2.0, "p": 0.5}}]).augmenter[0]
    assert isinstance(wrapped, iaa.Sometimes) and isinstance(wrapped.then_list[0], iaa.GaussianBlur)
    own = _stage([{"CoarseDropout": {"p": 0.1, "size_percent": 0.5}}]).augmenter[0]
    assert isinstance(own, iaa.CoarseDropout)
    some = _stage([{"SomeOf": {"n": [1, 2], "random_order": True, "children": ["Fliplr", "Invert"]}}]).augmenter[0]
    assert isinstance(some, iaa.SomeOf) and some.random_order and len(some) == 2


@pytest.mark.parametrize(("steps", "path", "message"), [
    ([{"GausianBlur": {}}], "stages[0].imgaug[0]", "did you mean GaussianBlur"),
    ([{"GaussianBlur": {"sigmaa": 1}}], "stages[0].imgaug[0].GaussianBlur.sigmaa", "did you mean sigma"),
    ([{"GaussianBlur": {"sigma": "wide"}}], "stages[0].imgaug[0].GaussianBlur.sigma", "imgaug rejected"),
    ([{"OneOf": {"children": [{"Multiply": {"mull": 2}}]}}], "stages[0].imgaug[0].OneOf.children[0].Multiply.mull", "did you mean mul"),
    ([{"Multiply": {"seed": 3}}], "stages[0].imgaug[0].Multiply.seed", "set by augexport"),
    ([{"Affine": {"p": 1.5}}], "stages[0].imgaug[0].Affine.p", "out of range"),
    ([{"OneOf": {}}], "stages[0].imgaug[0].OneOf", "missing required argument(s): children"),
    ([{"Add": {"value": {"choice": []}}}], "stages[0].imgaug[0].Add.value.choice", "non-empty list"),
    ({"Fliplr": {}}, "stages[0].imgaug", "expected a list of steps"),
])
def test_bad_specs_name_the_path(steps: object, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _stage(steps)
    assert err.value.path == path
    assert message in str(err.value)


def test_spec_round_trips_through_to_spec() -> None:
    steps = [{"Fliplr": {"p": 0.5}}, {"Add": {"value": {"choice": [-10, 10]}}}, "Invert"]
    spec = build_pipeline({"stages": [{"imgaug": steps}]}).to_spec()
    assert spec["stages"] == [{"imgaug": steps}]
    again = build_pipeline(spec).stages[0]
    img = _image()
    assert np.array_equal(again.apply(img, {"seed": 3}), _stage(steps).apply(img, {"seed": 3}))


def test_sample_pipeline_file_builds() -> None:
    pipeline = api.resolve_pipeline(REPO / "sample_data" / "imgaug.yaml")
    assert [s.name for s in pipeline.stages] == ["imgaug"]


def _small_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for cls in ("cat", "cup", "space"):
        (src / cls).mkdir(parents=True)
        for f in sorted((REPO / "sample_data" / cls).iterdir())[:3]:
            shutil.copy(f, src / cls / f.name)
    return src


def test_export_is_identical_across_workers_and_batch_sizes(tmp_path: Path) -> None:
    src = _small_source(tmp_path)
    config = tmp_path / "pipe.yaml"
    config.write_text(yaml.safe_dump({"seed": 3, "copies": 2, "stages": [{"imgaug": [
        {"Fliplr": {"p": 0.5}},
        {"Affine": {"rotate": [-25, 25], "scale": [0.9, 1.1]}},
        {"OneOf": {"children": [{"GaussianBlur": {"sigma": [0, 1.5]}}, {"AdditiveGaussianNoise": {"scale": [0, 10]}}]}},
        {"Cutout": {"nb_iterations": 1, "size": 0.2}},
        {"RandAugment": {"n": 1, "m": 7}},
    ]}]}))
    hashes = []
    for workers, batch in ((1, 4), (2, 3), (2, 16)):
        out = tmp_path / f"out_{workers}_{batch}"
        api.export(str(src), out, config=str(config), overrides={"image_size": 64}, workers=workers, batch_size=batch)
        shards = sorted(p for p in out.iterdir() if ".tfrecord-" in p.name)
        assert shards
        hashes.append({p.name: p.read_bytes() for p in shards})
    assert hashes[0] == hashes[1] == hashes[2]
    _replay_records(src, config, next(iter(hashes[0].values())))


def _replay_records(src: Path, config: Path, shard: bytes) -> None:
    """Every augmented record is reproduced from its source file and its recorded imgaug seed."""
    import io
    import json

    from augexport import codec
    from augexport.records import decode_example, read_tfrecords

    stage = api.resolve_pipeline(config).stages[0]
    augmented = 0
    for raw in read_tfrecords(io.BytesIO(shard)):
        ex = decode_example(raw)
        if ex["copy"][0] == 0:
            continue
        (entry,) = json.loads(ex["params"][0])
        assert entry["stage"] == "imgaug" and set(entry["params"]) == {"seed"}
        pixels = codec.decode((src / ex["source_id"][0].decode()).read_bytes(), channels=3, size=(64, 64))
        replayed = codec.encode(stage.apply(pixels, entry["params"]), "jpeg", 95)
        assert replayed == ex["image"][0]
        augmented += 1
    assert augmented > 0


def test_scipy_stats_is_imported_only_when_imgaug_uses_it() -> None:
    """import_imgaug defers scipy.stats (start-up of every worker); TruncatedNormal still works."""
    import subprocess
    import sys

    code = ("import sys; from augexport.imgaug_compat import defer_unused_imports, import_imgaug\n"
            "defer_unused_imports(); iaa = import_imgaug()\n"
            "import numpy as np, imgaug.parameters as iap\n"
            "loaded = 'scipy.stats._stats_py' in sys.modules\n"
            "x = iap.TruncatedNormal(0.0, 1.0, low=-1.0, high=1.0).draw_samples(1000, random_state=1)\n"
            "from scipy.stats import truncnorm\n"
            "import scipy.stats\n"
            "assert sys.modules['scipy.stats'] is scipy.stats and scipy.stats.truncnorm is truncnorm\n"
            "print(loaded, bool(-1 <= x.min() and x.max() <= 1 and abs(x.mean()) < 0.1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_deferred_modules_are_imported_only_when_something_uses_them() -> None:
    """import_imgaug defers scipy.spatial (and its distance module), scipy.ndimage and imageio: an
    Affine + Multiply + GaussianBlur run on uint8 images loads none of them. What uses them still
    works - keypoint distances, polygon clipping, skimage's triangulation (PiecewiseAffine, through
    the reference skimage took while it was deferred), scipy blurs, spline elastic warps, JPEG
    round trips, the keras stage's spline warp - and the real modules replace the stand-ins."""
    import subprocess
    import sys

    code = ("import importlib.util, sys\n"
            "from augexport.imgaug_compat import defer_unused_imports, import_imgaug\n"
            "defer_unused_imports(); iaa = import_imgaug()\n"
            "names = ('scipy.stats', 'scipy.spatial', 'scipy.spatial.distance', 'scipy.ndimage', 'imageio')\n"
            "assert all(importlib.util.find_spec(n).name == n for n in names)\n"
            "import numpy as np\n"
            "from imgaug.augmentables.kps import Keypoint\n"
            "from imgaug.augmentables.polys import Polygon\n"
            "from imgaug.augmenters.blur import blur_gaussian_\n"
            "img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)\n"
            "iaa.Sequential([iaa.Fliplr(0.5), iaa.Affine(rotate=(-20, 20)), iaa.Multiply((0.8, 1.2)),\n"
            "                iaa.GaussianBlur((0.5, 1))], seed=1)(image=img)\n"
            "heavy = ('scipy.spatial._qhull', 'scipy.sparse', 'scipy.ndimage._filters', 'imageio.core')\n"
            "loaded = any(m in sys.modules for m in heavy)\n"
            "near = Keypoint(1, 1).coords_almost_equals(Keypoint(1, 1.0001), max_distance=0.01)\n"
            "hull = Polygon([(0, 0), (4, 0), (4, 4), (0, 4)]).clip_out_of_image((3, 3))\n"
            "warped = iaa.PiecewiseAffine(scale=0.05, seed=1)(image=img)\n"
            "blurred = blur_gaussian_(img.astype(np.float64), 1.0, backend='scipy')\n"
            "elastic = iaa.ElasticTransformation(alpha=5, sigma=1, order=3, seed=1)(image=img)\n"
            "jpeg = iaa.JpegCompression(compression=50, seed=1)(image=img)\n"
            "from augexport.stages.keras import warp\n"
            "spline = warp(img, np.eye(3), 'nearest', 0.0, 3)\n"
            "import scipy.spatial.distance, scipy.spatial, scipy.ndimage, imageio\n"
            "from scipy.spatial import distance\n"
            "assert sys.modules['scipy.spatial'] is scipy.spatial and scipy.spatial.distance is distance\n"
            "assert all(type(m).__name__ == 'module' for m in (scipy.spatial, distance, scipy.ndimage, imageio))\n"
            "assert sys.modules['scipy.ndimage'] is scipy.ndimage and sys.modules['imageio'] is imageio\n"
            "shapes = {a.shape for a in (warped, blurred, elastic, jpeg, spline)}\n"
            "print(loaded, near, len(hull), shapes == {(40, 40, 3)}, distance.cdist([[0, 0]], [[3, 4]])[0, 0])")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=False)
    assert out.stdout.split() == ["False", "True", "1", "True", "5.0"], out.stderr[-2000:]


def test_imports_are_deferred_only_in_processes_that_ask() -> None:
    """A process that only imports augexport as a library gets the real modules from imgaug's
    import (the workers ask for the deferral at start-up)."""
    import subprocess
    import sys

    code = ("import sys; from augexport.imgaug_compat import import_imgaug; import_imgaug()\n"
            "import scipy.ndimage, scipy.spatial.distance, scipy.stats, imageio\n"
            "mods = (scipy.ndimage, scipy.spatial, scipy.spatial.distance, scipy.stats, imageio)\n"
            "print(all(type(m).__name__ == 'module' for m in mods), 'scipy.ndimage._filters' in sys.modules)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=False)
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


def test_pillike_affine_and_randaugment_run_on_one_channel_images() -> None:
    """Pillow refuses a three-value fill colour for a one-band image; imgaug passes one."""
    img = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    for steps in ([{"pillike.Affine": {"rotate": [-30, 30]}}], [{"RandAugment": {"n": 2, "m": 9}}]):
        stage = _stage(steps)
        for seed in range(30):
            out = stage.apply(img, {"seed": seed})
            assert out.shape == img.shape and out.dtype == np.uint8
    shifted = _stage([{"pillike.Affine": {"translate_px": {"x": 10}, "fillcolor": 200}}]).apply(img, {"seed": 1})
    assert (shifted[:, :10] == 200).all() and np.array_equal(shifted[:, 10:], img[:, :-10])
