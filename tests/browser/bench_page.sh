#!/usr/bin/env bash
# Times the browser app in headless Chromium on a real bundle: for each backend (WebGPU on
# SwiftShader, i.e. software, and the wasm CPU fallback), a fresh profile opens the page,
# types TEXT, clicks Explain, and waits for the result. Prints the engine's time per model
# and the wall time from opening the page to the last explanation (downloads included).
#   bash tests/browser/bench_page.sh BUNDLE_DIR [MODELS] [N_STEPS]
# BUNDLE_DIR is what `trainer export` wrote; the site must be built (bash web/build.sh).
# SwiftShader figures say nothing about a real GPU: they are a floor for a machine without one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bundle="$(cd "${1:?usage: bench_page.sh BUNDLE_DIR [MODELS] [N_STEPS]}" && pwd)"
models="${2:-}"
steps="${3:-50}"
text="${TEXT:-The petitioner argued that the search of the vehicle violated the Fourth Amendment, and the court of appeals agreed.}"
[ -f "$root/www/pkg/web_bg.wasm" ] || { echo "build the site first: bash web/build.sh" >&2; exit 1; }

site=$(mktemp -d)
srv=""
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$site"' EXIT
cp -r "$root/www/index.html" "$root/www/style.css" "$root/www/worker.js" "$root/www/pkg" "$site/"
ln -s "$bundle" "$site/models"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
srv=$!
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

url="http://127.0.0.1:$port/index.html?n_steps=$steps"
[ -n "$models" ] && url="$url&models=$models"
for backend in webgpu cpu; do
  flag=(); [ "$backend" = cpu ] && flag=(--no-webgpu)
  node "$here/drive.mjs" --url "$url&backend=$backend" --text "$text" --click --timeout 1800 "${flag[@]}" \
    --screenshot "${SHOT_DIR:-/tmp}/astrid-bench-$backend.png" > "$site/$backend.json" || true
  python3 - "$site/$backend.json" "$backend" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
r = out.get("result") or {}
if "models" not in r:
    print(f"{sys.argv[2]}: failed: {r.get('error') or out.get('driverError')}")
    sys.exit(0)
print(f"{sys.argv[2]} ({out.get('backendText')}): page open to last explanation {out['visitsMs'][-1] / 1000:.1f} s")
for m in r["models"]:
    print(f"  {m['name']:<14} {len(m['tokens']):>4} tokens  IG {m['ms'] / 1000:8.2f} s  delta {m['convergence_delta']:+.1e}")
PY
done
