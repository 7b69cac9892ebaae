"""Sinks take records in final order and `finalize()`: TFRecord shards (`tfrecord`), the image
folder (`images`) and the TFDS metadata (`tfds_meta`). Every file goes through `outdir.OutDir`
(temporary names, fsync, rename; never through a link) under a name from `naming`."""
