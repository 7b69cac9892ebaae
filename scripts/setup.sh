#!/usr/bin/env bash
# Create .venv with augexport, TensorFlow (CPU build by default) and the test tools.
# GPU hosts: AUGEXPORT_TF=gpu bash scripts/setup.sh   (installs tensorflow[and-cuda] instead)
# The `beam` extra (apache-beam[tfrecord], for --runner beam and tests/test_beam.py) pins pillow<13, protobuf<7.
# The `compare` extra (scikit-learn, matplotlib) is for `augexport compare` and tests/test_compare.py.
# The `remote` extra (fsspec, s3fs, gcsfs) is for s3:// / gs:// paths; `dev` brings moto[server] for their tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${AUGEXPORT_TF:-cpu},dev,beam,compare,remote]"
# imgaug 0.4.0 declares opencv-python + numpy<2; augexport.imgaug_compat makes it run on numpy 2
# beside the pinned opencv-python-headless, so it is installed without its declared deps.
.venv/bin/python -m pip install -q --no-deps -r requirements/imgaug.txt
echo "setup done: .venv ready"
