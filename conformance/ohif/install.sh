#!/usr/bin/env bash
# Install what the OHIF conformance tests drive, idempotently (a no-op when already there):
#   - playwright-core, from package-lock.json (npm ci), to drive Debian's /usr/bin/chromium;
#   - the prebuilt OHIF viewer: only its dist/ folder is used, so the pinned @ohif/app tarball
#     is fetched with `npm pack` (its build dependencies are not needed, and not all of them
#     are on the registry), checked against the integrity recorded in package.json, and
#     unpacked into ohif-app/<version>/.
# Prints the absolute path of the OHIF dist/ folder on its last line.
# `--viewer-only` (what `tessera viewer install` runs): the viewer, not playwright-core.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" != "--viewer-only" ]; then
  installed_playwright=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
  wanted_playwright=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
  if [ "$installed_playwright" != "$wanted_playwright" ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
fi

name=$(node -p 'require("./package.json").ohif.package')
version=$(node -p 'require("./package.json").ohif.version')
integrity=$(node -p 'require("./package.json").ohif.integrity')
target="ohif-app/$version"
if [ ! -f "$target/.complete" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --loglevel=error "$name@$version" >/dev/null)
  tarball=$(ls "$work"/*.tgz)
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$actual" != "$integrity" ]; then
    echo "integrity mismatch for $name@$version: $actual" >&2
    exit 1
  fi
  rm -rf "$target"
  mkdir -p "$target"
  tar -xzf "$tarball" -C "$target" --strip-components=1
  touch "$target/.complete"
fi
echo "$PWD/$target/dist"
