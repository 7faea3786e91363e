#!/usr/bin/env bash
# Rebuild gqlsync/graphiql/static/graphiql.{js,css} from pinned npm packages.
# Requires node >= 20 and npm; downloads only from the npm registry.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
OUT_DIR="../static"

npm ci --no-audit --no-fund

mkdir -p "$OUT_DIR"
# Bundling entry.jsx writes graphiql.js, and the imported CSS goes to graphiql.css
# next to it. Fonts are already inlined as data: URLs by graphiql's stylesheet.
./node_modules/.bin/esbuild entry.jsx \
  --bundle \
  --minify \
  --format=iife \
  --target=es2020 \
  --platform=browser \
  --define:process.env.NODE_ENV='"production"' \
  --legal-comments=none \
  --charset=utf8 \
  --outfile="$OUT_DIR/graphiql.js"

ls -l "$OUT_DIR/graphiql.js" "$OUT_DIR/graphiql.css"
