#!/bin/sh
# The install steps of the container image (configs/deploy/Dockerfile, build stage), kept in one
# script so that tests/test_wheel.py runs exactly these where no container engine is available.
#
#   sh configs/deploy/install.sh SOURCE_DIR VENV_DIR [PYTHON]
#
# Builds the wheel from the source tree and installs it, with its dependencies from the package
# registry pip is configured with, into a new venv at VENV_DIR (its meridian command is then
# VENV_DIR/bin/meridian). PYTHON's own pip (22.3 or newer, for --python) does the building and
# installing: the venv is made without pip, so the image that runs it carries no installer
# (and making it skips installing pip into it, about 4 s of CPU).
set -eu
source_dir=$1
venv=$2
python=${3:-python3}
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$python" -m venv --without-pip "$venv"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$source_dir"
# The wheel by its file name: a registry may hold an unrelated project called "meridian".
"$python" -m pip --python "$venv/bin/python" install --quiet "$wheels"/meridian-*.whl
"$venv/bin/meridian" --help >/dev/null
