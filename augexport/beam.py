"""`--runner beam`: the export as an Apache Beam pipeline, byte-identical to the local runner.

The launcher lists the source and plans exactly as the local runner does (`engine.order_items`,
`engine.plan_blocks`: record order and mix partners per block of 64 sources). Then:

  Create(one element per block) -> Reshuffle -> Render (worker.Renderer, same per-example
  generators; a mixed copy recomputes its partner's augmented copy, so no join is needed)
  -> key every record by its shard -> GroupByKey -> sort by planned index -> write the shard
  under its temporary name (+ a small JSON sidecar with its hash and counts).

Shard assignment replays `ShardWriter`: with --num-shards record i goes to i*N // planned_total
(empty shards are written too); with --shard-size the rollover depends on the sequential byte
counts, so the (planned_index, size) pairs of all records (16 bytes each) are combined into one
element and the first planned index of every shard is computed from them. The launcher then
hands the closed temporary shards to the run object, which finalizes them exactly as it does
the local runner's (renames, errors file, TFDS metadata, manifest).

With `--format images|both` the Render step also writes each record's image file into the
temporary image folder (workers write; the run object renames the folder into place, as for the
local runner).

SOURCE and OUT are local paths (which every worker must see: one host, or a shared mount) or URLs
(`s3://`, `gs://`, any fsspec URL), which every worker opens itself through `objstore`/`fs` with the
credentials of its own environment. Imported only for `--runner beam` (imports apache_beam).

Runners: the default is Beam's FnApiRunner, built here as the DirectRunner builds it. Beam 2.77's
DirectRunner would first try the Prism runner, which downloads a Prism binary at run time; runners
that would download a job server jar (Flink, Spark without a job endpoint) or a Prism binary are
refused before OUT is touched, and portable runners default to the LOOPBACK environment (no SDK
container image to pull).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from .engine import Block, Emitted, block_records, plan_export
from .errors import ExportFailed, UsageError
from .mixing import Mixing
from .naming import SplitNames, image_file
from .objstore import open_outdir
from .outdir import OutDir
from .plan import CopyPlan
from .sinks.images import ImageFolderWriter, ImageLayout
from .sinks.tfrecord import ShardInfo, write_shard
from .sources import SourceListing
from .worker import Job, Renderer

ERRORS = "errors"
SIZES = "sizes"
# DirectRunner defaults (each applies unless given); the log level quiets the worker processes' INFO lines
DEFAULT_OPTIONS = {"runner": "DirectRunner", "direct_num_workers": "2", "direct_running_mode": "multi_processing",
                   "default_sdk_harness_log_level": "WARNING"}
DIRECT = ("directrunner", "direct", "switchingdirectrunner", "fnapirunner")
PORTABLE = ("portablerunner", "flinkrunner", "sparkrunner")


def pipeline_flags(options: Sequence[str]) -> list[str]:
    """`--beam-option K=V` values -> PipelineOptions flags `--K=V` (bare `K` -> `--K`), after the
    defaults (DirectRunner, 2 worker processes) unless the user set those keys."""
    given: list[tuple[str, str | None]] = []
    for opt in options:
        key, sep, value = str(opt).partition("=")
        key = key.strip().lstrip("-")
        if not key or not key.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"--beam-option {opt!r} is not accepted; accepted: K=V with a Beam pipeline option "
                             "name K, e.g. runner=DataflowRunner or direct_num_workers=4")
        given.append((key, value if sep else None))
    keys = {k for k, _ in given}
    runner = (dict(given).get("runner") or DEFAULT_OPTIONS["runner"]).lower()
    flags = []
    for key, value in DEFAULT_OPTIONS.items():
        if key not in keys and (key == "runner" or runner in DIRECT):
            flags.append(f"--{key}={value}")
    if runner in PORTABLE and "environment_type" not in keys:
        flags.append("--environment_type=LOOPBACK")  # Beam's default, DOCKER, pulls an SDK image
    return flags + [f"--{k}" if v is None else f"--{k}={v}" for k, v in given]


def check_runner(options: PipelineOptions) -> None:
    """Refuse, before any work, a runner that would download a binary or jar at run time."""
    opts = options.get_all_options()
    runner = str(opts.get("runner") or "").lower()
    if runner in ("prismrunner", "prism") and not opts.get("prism_location"):
        raise UsageError("--beam-option runner=PrismRunner would download the Prism binary at run time; pass "
                         "--beam-option prism_location=/path/to/prism (a local binary), or leave runner unset "
                         "(the FnApiRunner, what Beam's DirectRunner runs here)")
    for name, jar in (("flinkrunner", "flink_job_server_jar"), ("sparkrunner", "spark_job_server_jar")):
        if runner == name and not opts.get("job_endpoint") and not _local_file(opts.get(jar)):
            raise UsageError(f"--beam-option runner={opts['runner']} without job_endpoint would download the job "
                             f"server jar from Maven at run time; start a job server and pass --beam-option "
                             f"job_endpoint=HOST:8099, or pass --beam-option {jar}=/path/to/job-server.jar "
                             "(see docs/beam.md)")


def _local_file(path: Any) -> bool:
    return isinstance(path, str) and os.path.isfile(path)


def _runner(options: PipelineOptions) -> Any:
    """The FnApiRunner for the DirectRunner names (as Beam's DirectRunner builds it, minus its Prism
    attempt); None: Beam resolves the runner by name."""
    if str(options.get_all_options().get("runner") or "").lower() not in DIRECT:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def make_options(flags: list[str]) -> PipelineOptions:
    """PipelineOptions; flags Beam does not know (or whose values it rejects) are a usage error
    here instead of Beam's logged warning. Parsed the way `PipelineOptions.get_all_options` does."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False, exit_on_error=False)
    for cls in PipelineOptions.__subclasses__():
        cls._add_argparse_args(parser)  # the parser Beam itself builds
    try:
        _, unknown = parser.parse_known_args(flags)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"--beam-option: apache-beam {beam.__version__} rejected {' '.join(flags)}: {exc}") from None
    if unknown:
        raise UsageError(f"--beam-option {unknown[0].lstrip('-')}: not a Beam pipeline option known to apache-beam "
                         f"{beam.__version__} (runner-specific options may need that runner's extra, e.g. "
                         "apache-beam[gcp] for Dataflow)")
    return PipelineOptions(flags)


def size_boundaries(sizes: Iterable[tuple[int, int]], shard_bytes: int) -> list[int]:
    """First planned index of each shard, replaying ShardWriter's rollover: a new shard starts at
    the first record written after the current one reached `shard_bytes`."""
    starts: list[int] = []
    written = 0
    for planned, size in sorted(sizes):
        if not starts or written >= shard_bytes:
            starts.append(planned)
            written = 0
        written += size
    return starts


@dataclass(frozen=True)
class Layout:
    """Where and how shards are written; small and picklable."""

    out: str  # a local path or a URL (`OutDir.location`)
    names: SplitNames
    planned_total: int
    num_shards: int | None
    shard_bytes: int
    compression: str
    shards: bool = True  # False with --format images: only the sidecars (counts) are written
    images: ImageLayout | None = None

    @property
    def outdir(self) -> OutDir:
        return open_outdir(self.out)

    def shard_count(self, starts: list[int] | None) -> int:
        return self.num_shards if self.num_shards else max(1, len(starts or []))

    def shard_of(self, planned: int, starts: list[int] | None) -> int:
        if self.num_shards:
            return planned * self.num_shards // max(self.planned_total, 1)
        assert starts is not None
        return bisect.bisect_right(starts, planned) - 1

    def temp_files(self) -> list[str]:
        return [e for e in self.outdir.entries() if e.startswith(self.names.temp_prefix)]


class RenderBlock(beam.DoFn):
    """One block -> its records (planned_index, framed, label, mixed); failed units and the
    per-record sizes go to tagged outputs."""

    def __init__(self, job: Job, layout: Layout) -> None:
        self.job = job
        self.layout = layout
        self.renderer: Renderer | None = None
        self.images: ImageFolderWriter | None = None

    def setup(self) -> None:
        self.renderer = Renderer(self.job)
        if self.layout.images is not None:
            self.images = ImageFolderWriter(self.layout.outdir, self.layout.names, drop_partial=False, rows=False)

    def process(self, block: Block) -> Iterator[Any]:
        assert self.renderer is not None
        results = self.renderer.process(block.units)
        sizes = []
        for rec in block_records(block, results):
            if not isinstance(rec, Emitted):
                pos = results.index(rec)
                yield beam.pvalue.TaggedOutput(ERRORS, (block.index, pos, rec.source_id, rec.error))
                continue
            if self.images is not None and rec.image is not None:
                self._write_image(rec)
            sizes.append((rec.planned_index, len(rec.framed)))
            yield (rec.planned_index, rec.framed if self.layout.shards else b"", rec.label, rec.mixed)
        yield beam.pvalue.TaggedOutput(SIZES, sizes)

    def _write_image(self, rec: Emitted) -> None:
        """The record's image file, named as the local runner names it (a retried bundle rewrites
        the same bytes)."""
        images, layout = self.images, self.layout.images
        assert images is not None and layout is not None and rec.image is not None
        name = image_file(self.layout.names, layout.class_names[rec.label], rec.source_id, rec.copy, layout.ext,
                          layout.collisions)
        images.write(name, rec.image)


def _key_by_shard(rec: tuple[int, bytes, int, bool], layout: Layout, starts: list[int] | None) -> tuple[int, Any]:
    return layout.shard_of(rec[0], starts), rec


def _all_shards(starts: list[int] | None, layout: Layout) -> list[tuple[int, Any]]:
    """A marker per shard so that shards without records (num-shards mode) are written too."""
    return [(k, None) for k in range(layout.shard_count(starts))]


class WriteShard(beam.DoFn):
    """Sort one shard's records by planned index and write them with the local runner's framing."""

    def __init__(self, layout: Layout, num_classes: int) -> None:
        self.layout = layout
        self.num_classes = num_classes

    def process(self, element: tuple[int, Iterable[Any]]) -> Iterator[int]:
        index, values = element
        recs = sorted((v for v in values if v is not None), key=lambda r: r[0])
        outdir, names = self.layout.outdir, self.layout.names
        info = write_shard(outdir, names.temp_shard(index), (r[1] for r in recs), self.layout.compression) \
            if self.layout.shards else ShardInfo("", len(recs), 0, "")
        labels = [0] * self.num_classes
        for r in recs:
            labels[r[2]] += 1
        side = {"index": index, **info.to_json(), "mixed": sum(bool(r[3]) for r in recs), "label_counts": labels}
        outdir.write_atomic(names.shard_sidecar(index), json.dumps(side).encode())
        yield index


def _write_errors(errors: list[tuple[int, int, str, str]], layout: Layout) -> None:
    layout.outdir.write_atomic(layout.names.beam_errors, json.dumps(sorted(errors)).encode("utf-8", "surrogateescape"))


@dataclass
class BeamResult:
    shards: list[ShardInfo]  # closed, under their temporary names (the run object finalizes them)
    written: int
    mixed: int
    label_counts: list[int]
    errors: list[tuple[str, str]]


def build(p: beam.Pipeline, blocks: list[Block], job: Job, layout: Layout) -> None:
    """The pipeline graph (see the module docstring)."""
    rendered = (p | "Blocks" >> beam.Create(blocks, reshuffle=False)
                | "Spread" >> beam.Reshuffle()
                | "Render" >> beam.ParDo(RenderBlock(job, layout)).with_outputs(ERRORS, SIZES, main="records"))
    if layout.num_shards:
        starts = p | "NoStarts" >> beam.Create([None])
    else:
        starts = (rendered[SIZES] | "Flatten sizes" >> beam.FlatMap(lambda sizes: sizes)
                  | "All sizes" >> beam.combiners.ToList()
                  | "Boundaries" >> beam.Map(size_boundaries, layout.shard_bytes))
    keyed = rendered.records | "Shard of" >> beam.Map(_key_by_shard, layout, beam.pvalue.AsSingleton(starts))
    markers = starts | "Every shard" >> beam.FlatMap(_all_shards, layout)
    _ = ((keyed, markers) | beam.Flatten() | "By shard" >> beam.GroupByKey()
         | "Write" >> beam.ParDo(WriteShard(layout, job.num_classes)))
    _ = (rendered[ERRORS] | "All errors" >> beam.combiners.ToList()
         | "Write errors" >> beam.Map(_write_errors, layout))


def run_export(listing: SourceListing, plan: CopyPlan, mix: Mixing | None, job: Job, *, outdir: OutDir,
               names: SplitNames, shuffle: bool, num_shards: int | None, shard_bytes: int, compression: str,
               on_error: str, beam_options: list[str], shards: bool = True,
               images: ImageLayout | None = None) -> BeamResult:
    """Run the Beam pipeline; returns its closed temporary shards (nothing is final yet). A failed
    run removes every temporary shard it wrote (the run object removes the image folder)."""
    options = make_options(pipeline_flags(beam_options))
    check_runner(options)
    blocks = list(plan_export(listing.items, plan, mix, shuffle))
    layout = Layout(outdir.location, names, plan.total(listing.items), num_shards,
                    shard_bytes, compression, shards, images)
    try:
        with beam.Pipeline(runner=_runner(options), options=options) as p:
            build(p, blocks, job, layout)
        result = _collect(layout, job.num_classes)
        if result.errors and on_error == "fail":
            sid, err = result.errors[0]
            raise ExportFailed(f"{sid}: {err} (--on-error fail; nothing was finalized)")
    except ExportFailed:
        _cleanup(layout)
        raise
    except Exception as exc:
        _cleanup(layout)
        raise ExportFailed(f"Beam pipeline failed: {type(exc).__name__}: {exc}; nothing was finalized") from exc
    except BaseException:
        _cleanup(layout)
        raise
    for name in layout.temp_files():  # sidecars and the errors note: read, no longer needed
        if not names.is_temp_shard(name):
            outdir.unlink(name)
    return result


def _collect(layout: Layout, num_classes: int) -> BeamResult:
    """Read back the sidecars and errors the workers wrote; every shard 0..n-1 must be there."""
    outdir, names = layout.outdir, layout.names
    sides = sorted((json.loads(outdir.read_bytes(n)) for n in layout.temp_files()
                    if n.endswith(".json") and n != names.beam_errors), key=lambda s: s["index"])
    if [s["index"] for s in sides] != list(range(len(sides))) or not sides:
        raise ExportFailed(f"Beam pipeline left shards {[s['index'] for s in sides]}, expected 0..n-1")
    labels = [0] * num_classes
    for s in sides:
        labels = [a + b for a, b in zip(labels, s["label_counts"], strict=True)]
    errors = [(sid, err) for _b, _u, sid, err in json.loads(outdir.read_bytes(names.beam_errors).decode("utf-8"))]
    shards = [ShardInfo(s["file"], s["records"], s["bytes"], s["sha256"]) for s in sides] if layout.shards else []
    return BeamResult(shards, sum(s["records"] for s in sides), sum(s["mixed"] for s in sides), labels, errors)


def _cleanup(layout: Layout) -> None:
    for name in layout.temp_files():
        layout.outdir.unlink(name)


__all__ = ["BeamResult", "Layout", "check_runner", "pipeline_flags", "run_export", "size_boundaries"]
