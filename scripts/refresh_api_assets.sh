#!/usr/bin/env bash
# Refresh the REST service's offline API docs assets (voicelab/surfaces/api/static/) from npm: Swagger UI
# (swagger-ui-dist) for /docs and ReDoc for /redoc. Usage: scripts/refresh_api_assets.sh [SWAGGER_VERSION] [REDOC_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.." && out=voicelab/surfaces/api/static && tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@${1:-5}" "redoc@${2:-2}" >/dev/null && mkdir s r && tar xzf swagger-ui-dist-*.tgz -C s && tar xzf redoc-*.tgz -C r)
s=$tmp/s/package r=$tmp/r/package
cp "$s"/swagger-ui-bundle.js "$s"/swagger-ui-bundle.js.LICENSE.txt "$s"/swagger-ui.css "$s"/favicon-32x32.png "$out"/
cp "$s"/LICENSE "$out"/swagger-ui.LICENSE && cp "$s"/NOTICE "$out"/swagger-ui.NOTICE
cp "$r"/bundles/redoc.standalone.js "$r"/bundles/redoc.standalone.js.LICENSE.txt "$out"/
sv=$(node -p "require('$s/package.json').version") rv=$(node -p "require('$r/package.json').version")
sed -i -E "s/swagger-ui-dist@[0-9.]+/swagger-ui-dist@$sv/; s/redoc@[0-9.]+/redoc@$rv/" "$out"/README.md
echo "refreshed: swagger-ui-dist@$sv, redoc@$rv in $out"
