#!/usr/bin/env bash
# On the lent GPU machine, in the repository root (see scripts/device_runs.py and the README):
# install the carried wheels, then unpack the data, train the plan on JAX and fill $OUT.
set -euo pipefail
PACK="${FER_DEVICE_PACK:-.device}"  # what scripts/device_runs.py pack wrote (and the calls carried)
if ls "$PACK"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$PACK"/wheels/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
exec python3 scripts/device_runs.py device --plan "${PLAN:-configs/gpu-runs.yaml}" --jobs "${JOBS:-4}" "$@"
