#!/usr/bin/env bash
# Builds Astrid's browser app into www/ (www/pkg/: the wasm module and its JavaScript glue).
#   bash web/build.sh
# Then serve www/ with any static file server, with a bundle in www/models/
# (`trainer export --run RUN_DIR --to www/models`). Needs the wasm32 target and
# wasm-bindgen-cli of the exact version in Cargo.lock; both are installed when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
profile=wasm-release

version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
  echo "web/build.sh: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  # Built from source; --locked is left out on purpose (it fails to resolve this version).
  cargo install wasm-bindgen-cli --version "$version"
fi

cargo build -p web --target wasm32-unknown-unknown --profile "$profile" --locked
wasm="$target_dir/wasm32-unknown-unknown/$profile/web.wasm"

# Generate next to www/pkg and swap in, so a failed build never leaves half a site.
staging=$(mktemp -d "$root/www/.pkg.XXXXXX")
trap 'rm -rf "$staging"' EXIT
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$staging" "$wasm"
# Replace www/pkg only when it holds nothing but what wasm-bindgen writes: never a user's file.
if [ -e "$root/www/pkg" ]; then
  foreign=$(find "$root/www/pkg" -mindepth 1 -maxdepth 1 \
    ! -name web.js ! -name web_bg.wasm ! -name web.d.ts ! -name web_bg.wasm.d.ts \
    ! -name package.json ! -name snippets ! -name .gitignore -printf '%f ')
  if [ -n "$foreign" ] || [ ! -d "$root/www/pkg" ]; then
    echo "web/build.sh: www/pkg is not only the build's output (it holds: ${foreign:-a file, not a directory}); nothing was replaced. Move those files away, then build again." >&2
    exit 1
  fi
fi
rm -rf "$root/www/pkg"
mv "$staging" "$root/www/pkg"
trap - EXIT

bg="$root/www/pkg/web_bg.wasm"
raw=$(stat -c %s "$bg")
gz=$(gzip -9 -c "$bg" | wc -c)
if command -v brotli >/dev/null; then br=$(brotli -c -q 11 "$bg" | wc -c); else br="(brotli not installed)"; fi
echo "www/pkg/web_bg.wasm: raw $raw bytes, gzip -9 $gz, brotli -q 11 $br"
