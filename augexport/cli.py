"""Click CLI: parse flags, call `augexport.api`, map domain errors to exit codes. Nothing else."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .errors import AugexportError, Interrupted, UsageError
from .quiet import mark_cli, set_verbose

# Shared option groups (decorators), sqlite-utils style.


def _compose(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _keras_flags() -> list[tuple[str, Any]]:
    """(param name, Param) of the `keras` stage, if registered: every ImageDataGenerator argument is a flag."""
    from .stages import builtin_stage

    cls = builtin_stage("keras")
    return [(p.name, p) for p in cls.schema] if cls else []


def _keras_options(f: Any) -> Any:
    for name, param in reversed(_keras_flags()):
        flag = "--" + name.replace("_", "-")
        if param.kind == "bool":
            f = click.option(flag, name, is_flag=True, default=None, help=f"keras stage: {param.doc}")(f)
        else:
            f = click.option(flag, name, default=None, metavar="VALUE",
                             help=f"keras stage ({param.kind}): {param.doc}")(f)
    return f


# Options shared by `export` and `tta`: where the source is and how the output is written.
_source_options = (
    click.option("--labels", type=click.Path(dir_okay=False),
                 help="filename,label CSV for a flat SOURCE folder (or the labels .npy of npy:X.npy)."),
    click.option("--data-dir", help="TFDS data directory (tfds: sources)."),
    click.option("--x-key", help="npz: sources: the pixel array's key (default x)."),
    click.option("--y-key", help="npz: sources: the label array's key (default y)."),
    click.option("--class-names", metavar="A,B,...",
                 help="Array sources: class names in label order (default: the npz's class_names, else 0..C-1)."),
    click.option("--value-range", metavar="auto|0,1|0,255",
                 help="Array sources with float pixels: [0, 1] (scaled by 255) or [0, 255]; auto (default) "
                      "decides from the maximum (uint8 is taken as it is)."),
)
_output_options = (
    click.option("--workers", type=int, help="Worker processes (default: all cores; at most 4 per core, or 32 on smaller machines)."),
    click.option("--batch-size", type=int, default=16, show_default=True, help="Images per worker task."),
    click.option("--name", help="Dataset name (default: the source folder's or dataset's name)."),
    click.option("--format", "fmt", default="tfrecord", show_default=True, help="tfrecord|images|both."),
    click.option("--encoding", default="jpeg", show_default=True, help="jpeg|png."),
    click.option("--quality", type=int, default=95, show_default=True, help="JPEG quality 1..100."),
    click.option("--num-shards", type=int, help="Exact number of shards."),
    click.option("--shard-size", help="Target shard size, e.g. 256MiB (default)."),
    click.option("--compression", default="none", show_default=True, help="none|gzip (gzip is not TFDS-loadable)."),
    click.option("--channels", type=int, help="3 (RGB) or 1 (grey); default 3, or an array source's own (1 for N×H×W)."),
    click.option("--on-error", default="skip", show_default=True, help="skip|fail for unreadable inputs."),
    click.option("--max-pixels", type=int,
                 help="Largest image (width x height) decoded; bigger ones are skipped as decompression bombs "
                      "(default 89478485, PIL's limit)."),
    click.option("--max-file-bytes", default="1GiB", show_default=True,
                 help="Largest input file read (e.g. 200MiB); bigger ones are skipped."),
    click.option("--resume", is_flag=True, help="Complete an interrupted run into the same OUT."),
    click.option("--overwrite", is_flag=True, help="Replace existing output in OUT."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
    click.option("--verbose", is_flag=True, help="Also show what TensorFlow and Apache Beam print (hidden by default)."),
)

# Keras' resize modes (keras.utils.image_dataset_from_directory); without them --image-size stretches.
_resize_options = (
    click.option("--interpolation", help="With --image-size: Keras' resize, bilinear|nearest|bicubic|area|lanczos3|"
                                         "lanczos5 (default: augexport's stretch, bilinear with area averaging)."),
    click.option("--crop-to-aspect-ratio", is_flag=True, default=None,
                 help="With --image-size: centre-crop to the target aspect ratio, then resize (Keras)."),
    click.option("--pad-to-aspect-ratio", is_flag=True, default=None,
                 help="With --image-size: resize to fit, then pad with zeros to the target size (Keras)."),
)

common_options = _compose(
    click.option("--config", type=click.Path(dir_okay=False), help="Pipeline file (.yaml or .json)."),
    *_source_options,
    click.option("--image-key", help="tfds: image feature (default: from supervised_keys)."),
    click.option("--label-key", help="tfds: ClassLabel feature (default: from supervised_keys)."),
    click.option("--copies", type=int, help="Augmented copies per source image (default: the pipeline's; else 1 "
                                            "with stages, a keras flag or --mix, 0 without)."),
    click.option("--include-original/--no-include-original", default=None, help="Also write each original (copy 0)."),
    click.option("--image-size", help="Resize to 224 or HxW like 224x160."),
    *_resize_options,
    click.option("--seed", type=int, help="Seed of every per-example generator (default 0)."),
    click.option("--label-smoothing", type=float, help="Label smoothing epsilon for soft_label."),
    click.option("--device", default="auto", show_default=True,
                 help="auto|cpu|gpu: the CPU path, or keras warp/tf_image colour ops/mixing batched in "
                      "keras.ops on the Keras backend's GPU; auto: only for heavy stages when a GPU is seen."),
    click.option("--shuffle/--no-shuffle", default=True, show_default=True, help="Seeded record order, or source order."),
    *_output_options,
    click.option("--runner", default="local", show_default=True, help="local|beam."),
    click.option("--beam-option", multiple=True, metavar="K=V", help="Beam pipeline option (repeatable)."),
    click.option("--mix", "mix_method", help="cutmix|mixup|none: batch-level mixing with soft labels."),
    click.option("--mix-alpha", type=float, help="Beta(alpha, alpha) for lambda (default 1.0; every entry of a config's mix: list)."),
    click.option("--mix-p", type=float, help="Fraction of augmented copies mixed (default 0.5; every entry of a config's mix: list)."),
)


def _fail(exc: AugexportError) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _keras_values(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the ImageDataGenerator flags that were given (their text is parsed by the library)."""
    return {name: value for name, _ in _keras_flags() if (value := kw.pop(name, None)) is not None}


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises `Interrupted` so a run stops cleanly and stays resumable (SIGINT already does)."""

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. inside some test runners)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self.bar: Any = None

    def start(self, total: int) -> None:
        if not self.quiet:
            from tqdm import tqdm

            # tqdm's monitor is a thread, and a process with a second thread spawns its workers
            # instead of forking them (engine.worker_start_method); it only shortens the wait for
            # a redraw when updates are far apart, and this bar is updated as each block lands
            tqdm.monitor_interval = 0
            self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Main(click.Group):
    """Every command: a path the operating system refuses to look at because of its name (too long,
    a loop of symbolic links) is the user's mistake, exit 2 naming it, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        mark_cli()
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno not in (errno.ENAMETOOLONG, errno.ELOOP) or exc.filename is None:
                raise
            from .targets import os_reason

            click.echo(f"Error: {exc.filename}: {os_reason(Path(os.fsdecode(exc.filename)), exc)}", err=True)
            sys.exit(2)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="augexport")
def main() -> None:
    """Offline image-dataset augmentation and export to TFDS-loadable TFRecord shards."""


@main.command()
@click.argument("source")
@click.argument("out", type=click.Path(file_okay=False))
@common_options
@click.option("--split", help="Output split name (default train); for tfds: sources a TFDS split expression.")
@_keras_options
def export(source: str, out: str, **kw: Any) -> None:
    """Augment SOURCE (class folders, flat folder + --labels, tfds:NAME, npz:FILE or npy:X.npy,Y.npy) and write shards into OUT."""
    from . import api

    progress = _Progress(kw.pop("quiet"))
    set_verbose(kw.pop("verbose"))

    def call() -> Any:
        keras = _keras_values(kw)
        kw["beam_options"] = list(kw.pop("beam_option"))
        return api.export(source, out, keras=keras, command=["augexport", *sys.argv[1:]],
                          on_start=progress.start, progress=progress.update, **kw)

    click.echo(_run_resumable(call, progress, beam=kw.get("runner") == "beam").summary())


def _run_resumable(call: Callable[[], Any], progress: _Progress, beam: bool = False) -> Any:
    """Run an export-like call: domain errors -> exit codes; SIGINT/SIGTERM -> 130/143 with how to resume."""
    try:
        with _signals_raise():
            return call()
    except AugexportError as exc:
        _fail(exc)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        hint = ("the Beam run's temporary files were removed; rerun the same command" if beam else
                "finished shards were kept and nothing was finalized; rerun the same command with --resume "
                "to complete it")
        progress.close()
        click.echo(f"Interrupted: {hint}.", err=True)
        _exit_now(128 + int(signum))
    finally:
        progress.close()


def _exit_now(code: int) -> None:
    """Exit after an interrupt. The process pool's helper threads normally end within moments of the
    workers stopping; if one is stuck waiting on a killed worker, leave without joining it
    (everything that matters is on disk: finished shards fsynced, the journal written)."""
    deadline = time.monotonic() + 3
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


tta_options = _compose(
    click.option("--variants", multiple=True, required=True, metavar="SPEC",
                 help="Comma-separated variants (repeatable): identity, hflip, vflip, rot90, rot180, rot270, "
                      "transpose, transverse, d4, five_crop:S, ten_crop:S, scale:F, shift:DY,DX, brightness:F, "
                      "random:N[@pipeline.yaml]."),
    click.option("--config", type=click.Path(dir_okay=False),
                 help="Pipeline file for random:N (also the default seed and image size)."),
    *_source_options,
    click.option("--image-size", help="Resize to 224 or HxW like 224x160 before the variants."),
    click.option("--seed", type=int, help="Seed of random:N draws (default 0)."),
    click.option("--split", help="Output split name (default test); for tfds: sources a TFDS split expression."),
    *_output_options,
)


@main.command()
@click.argument("source")
@click.argument("out", type=click.Path(file_okay=False))
@tta_options
def tta(source: str, out: str, **kw: Any) -> None:
    """Write a deterministic test-time-augmentation set of SOURCE into OUT: every variant of every
    image, consecutive and in the order given (copy = variant index, variant = its name)."""
    from . import api

    progress = _Progress(kw.pop("quiet"))
    set_verbose(kw.pop("verbose"))

    def call() -> Any:
        return api.tta(source, out, command=["augexport", *sys.argv[1:]], on_start=progress.start,
                       progress=progress.update, **kw)

    click.echo(_run_resumable(call, progress).summary())


@main.command("tta-merge")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="The TTA split the predictions are for.")
@click.option("--predictions", required=True, type=click.Path(dir_okay=False),
              help="N·K × C .npy array of model outputs, in record order.")
@click.option("--method", default="mean", show_default=True, help="mean|vote|geomean.")
@click.option("--logits", is_flag=True, help="Predictions are logits: softmax them first.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write merged.csv or merged.npy.")
def tta_merge(out: str, split: str, predictions: str, method: str, logits: bool, output: str | None) -> None:
    """Merge per-variant predictions of a TTA split back to one prediction per source image."""
    from . import api

    try:
        result = api.tta_merge(out, split, predictions, method=method, logits=logits, output=output)
    except AugexportError as exc:
        _fail(exc)
    click.echo(result.summary())


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--verify", is_flag=True, help="Re-hash every shard against the manifest and re-read every record.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(out: str, verify: bool, as_json: bool) -> None:
    """Show splits, shards, counts, label histogram and mixed fraction of an augexport OUT."""
    import json

    from . import api

    try:
        report = api.inspect(out, verify=verify)
    except AugexportError as exc:
        _fail(exc)
    click.echo(json.dumps(report, indent=2) if as_json else api.format_inspect(report))
    if report["problems"]:  # what --verify would raise for: a damaged OUT is a failure, listed above
        sys.exit(1)
    if verify:
        images = any("images" in s for s in report["splits"].values())
        click.echo("verify: every shard matches the manifest" + (", every image file its sha256 in labels.csv"
                                                                    if images else ""))


@main.command()
@click.argument("source")
@click.option("-o", "--output", "out_png", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--config", type=click.Path(dir_okay=False), help="Pipeline file (.yaml or .json).")
@click.option("-n", "n", type=int, default=8, show_default=True, help="Source images (rows), first in export order.")
@click.option("--copies", type=int, help="Augmented copies per row (default 4; a pipeline that mixes: its own copies, "
              "since partners are drawn among them).")
@click.option("--seed", type=int, help="Seed (default: the pipeline's, else 0).")
@click.option("--image-size", help="Resize to 224 or HxW like 224x160.")
@_compose(*_resize_options)
@click.option("--labels", type=click.Path(dir_okay=False), help="filename,label CSV for a flat SOURCE folder.")
@click.option("--split", help="TFDS split expression (tfds: sources).")
@click.option("--data-dir", help="TFDS data directory (tfds: sources).")
@click.option("--channels", type=int, help="3 (RGB) or 1 (grey), as the export's; default 3, or an array source's own.")
@click.option("--cell", type=int, default=160, show_default=True, help="Thumbnail size in pixels.")
def preview(source: str, out_png: str, **kw: Any) -> None:
    """Write a PNG contact sheet: per source image, the original then its augmented copies, captioned."""
    from . import api

    try:
        result = api.preview(source, out_png, **kw)
    except AugexportError as exc:
        _fail(exc)
    click.echo(result.summary())


# -- augexport compare ------------------------------------------------------------------------
@main.command()
@click.argument("paths", nargs=-1, metavar="[SOURCE] OUT")
@click.option("--pipeline", "pipelines", multiple=True, metavar="[NAME=]FILE",
              help="A variant's pipeline file, named by its stem or NAME (repeat, two or more); none given: "
                   "none, keras-basic, keras+cutmix, keras+mixup.")
@click.option("--epochs", type=int, default=20, show_default=True, help="Training epochs per run.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Training runs per variant (seeds SEED, SEED+1, ...).")
@click.option("--copies", type=int, help="Augmented copies per training image, for every variant that augments "
                                         "(default: the pipeline's; 4 in the built-in set).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Source images held out for validation (seeded hash of source_id; never augmented).")
@click.option("--train-per-class", type=int, help="At most N training images per class (default: all; 20 for sklearn:digits).")
@click.option("--image-size", help="Resize every split to 224 or HxW like 224x160.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the exports and the first run.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Training batch size.")
@click.option("--filters", type=int, default=16, show_default=True, help="CNN width (first conv layer; 2x, 4x after).")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--split", help="TFDS split expression (tfds: sources), e.g. 'train[:20%]'.")
@click.option("--data-dir", help="TFDS data directory (tfds: sources).")
@click.option("--workers", type=int, help="Export worker processes (default: all cores; at most 4 per core, or 32 on smaller machines).")
@click.option("--overwrite", is_flag=True, help="Replace a previous compare run in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bars or step lines.")
def compare(paths: tuple[str, ...], quiet: bool, **kw: Any) -> None:
    """Export SOURCE (class folders, tfds:NAME, or sklearn:digits when omitted) with each pipeline, train one
    small Keras CNN per pipeline on a source-disjoint split, and write OUT/compare.png, .json and .md."""
    from . import api

    progress = not quiet and sys.stderr.isatty()
    try:
        if len(paths) not in (1, 2):
            raise UsageError(f"compare takes [SOURCE] OUT; got {len(paths)} argument(s)")
        with _signals_raise():
            result = api.compare(paths[0] if len(paths) == 2 else None, paths[-1], progress=progress,
                                 command=["augexport", *sys.argv[1:]],
                                 log=(lambda msg: click.echo(msg, err=True)) if progress else None, **kw)
    except AugexportError as exc:
        _fail(exc)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        click.echo("Interrupted: " + ("OUT holds a partial comparison; rerun with --overwrite." if
                                      getattr(exc, "compare_partial", False) else "OUT is as it was."), err=True)
        _exit_now(128 + int(signum))
    click.echo(result.summary())


@main.command()
@click.argument("word", required=False)
def ops(word: str | None) -> None:
    """List every stage, op and parameter the pipeline file accepts; WORD (e.g. keras, zoom, resize)
    keeps the stages whose name, ops or parameters contain it."""
    from . import api

    try:
        click.echo(api.format_ops(word))
    except AugexportError as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
