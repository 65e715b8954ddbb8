# The FER2013 study's figures that come from checks outside its notebooks (exports, agreement,
# the model soup, ensembles of seed CNNs), as markdown: `make fer2013-checks` writes them to
# reports/fer2013/checks.md. Needs the trained float32 models in runs/ (this machine's long
# runs, not bfloat16 exports restored in their place; the published exports are in
# reports/long-runs/). Usage: bash THIS [DATA]
set -euo pipefail
DATA=${1:-../shared/data/fer2013.zip}
PY=${PY:-.venv/bin/python}
PUBLISHED=reports/long-runs
# the run shipped as fer_utils/default_model (the study's analysed model)
DEFAULT_RUN=$("$PY" -c 'import yaml; print(yaml.safe_load(open("configs/fer2013.yaml"))["model_name"])')
SOUP=$(mktemp -d)/soup.keras
trap 'rm -rf "$(dirname "$SOUP")"' EXIT

check() {  # check TITLE COMMAND...: the command and its output
    printf '## %s\n\n```\n$ %s\n' "$1" "${*:2}"
    "${@:2}"  # stdout only: TensorFlow logs on stderr stay on the terminal
    printf '```\n\n'
}

shopt -s nullglob
published_runs=$(for model in $PUBLISHED/*/model.keras; do basename "$(dirname "$model")"; done)
trained() {  # trained RUN: runs/RUN/model.keras is there and not a bfloat16 export
    [ -f runs/$1/model.keras ] && "$PY" -c 'import sys; from fer_utils.long_runs import stored_precision
sys.exit(stored_precision(sys.argv[1]) == "bfloat16")' runs/$1/model.keras
}
for run in vgg-wide-sgd vgg-wide-sgd-anneal vgg-wide-sgd-anneal-all vgg-wide-sgd-distill-all $DEFAULT_RUN $published_runs; do
    if ! trained $run; then
        echo "runs/$run/model.keras: the trained float32 model is not on this machine (missing, or restored" \
             "as its bfloat16 export by long-runs restore); the committed checks.md keeps its figures" >&2
        exit 1
    fi
done

echo "# FER2013 study: checks outside the notebooks"
echo
echo "Written by \`make fer2013-checks\` on $(date -u +%F) at commit $(git describe --always --dirty --abbrev=7)," \
     "data sha256 $(sha256sum "$DATA" | cut -c1-12)."
echo
check "Default model: bfloat16 export against the trained float32 model (PublicTest)" \
    "$PY" benchmarks/export_check.py runs/$DEFAULT_RUN/model.keras fer_utils/default_model/model.keras --data "$DATA"
for run in $published_runs; do  # each other published export (models not copied as trained)
    published=$PUBLISHED/$run/model.keras
    if [ $run != $DEFAULT_RUN ] && ! cmp -s "$published" runs/$run/model.keras; then
        check "$run: published export against its float32 model (PublicTest)" \
            "$PY" benchmarks/export_check.py runs/$run/model.keras "$published" --data "$DATA"
    fi
done
check "Agreement of vgg-wide-adam with vgg-wide-sgd-anneal-all (as published; 'exported' = vgg-wide-adam)" \
    "$PY" benchmarks/export_check.py $PUBLISHED/vgg-wide-sgd-anneal-all/model.keras $PUBLISHED/vgg-wide-adam/model.keras --data "$DATA"
check "Model soup: weight average of the three annealed continuations" \
    "$PY" -m fer_utils export runs/vgg-wide-sgd-anneal/model.keras runs/vgg-wide-sgd-anneal-all/model.keras \
    runs/vgg-wide-sgd-distill-all/model.keras "$SOUP"
check "Model soup against vgg-wide-sgd-anneal-all as trained (float32; 'exported' = the soup)" \
    "$PY" benchmarks/export_check.py runs/vgg-wide-sgd-anneal-all/model.keras "$SOUP" --data "$DATA"
check "Model soup on validation: the one pair of runs on one split" \
    "$PY" benchmarks/soup_check.py runs/vgg-wide-sgd runs/vgg-wide-sgd-anneal --data "$DATA"
check "The class-weighted seed CNN as a second ensemble member (random TTA x10)" \
    "$PY" -m fer_utils evaluate --data "$DATA" --usage PublicTest --tta 10 \
    --model $PUBLISHED/seed-cnn-unweighted/model.keras --model $PUBLISHED/seed-cnn-weighted/model.keras
check "The three seeds of the unweighted seed CNN as an ensemble: independent members (random TTA x10)" \
    "$PY" -m fer_utils evaluate --data "$DATA" --usage PublicTest --tta 10 \
    $(for seed in "" -seed1 -seed2; do echo --model $PUBLISHED/seed-cnn-unweighted$seed/model.keras; done)
check "Default model: float32 file size, parameters and cost" \
    "$PY" -c "import os; from fer_utils.predict import load_model; from fer_utils.models import flops_per_image
m = load_model('fer_utils/default_model/model.keras')
print(f'float32 file {os.path.getsize(\"runs/$DEFAULT_RUN/model.keras\") / 1e6:.1f} MB; '
      f'bfloat16 export {os.path.getsize(\"fer_utils/default_model/model.keras\") / 1e6:.1f} MB; '
      f'{m.count_params():,} parameters; {flops_per_image(m) / 1e6:.0f} MFLOPs per image')"
check "Precision: the option 'auto' resolved on this machine (manifests record the policy since 2026-11-30)" \
    "$PY" -c "from fer_utils.train import resolve_precision; print('auto ->', resolve_precision('auto'))"
