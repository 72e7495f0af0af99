#!/bin/bash
# The demo runner's build: the study's prefix compiled into index.html, as
# ember-lookit-frameplayer's `ember build` does with PREPEND_FINGERPRINT.
# No network, no tools beyond sed and cp.
set -euo pipefail
: "${CHECKOUT_DIR:?}" "${PREPEND_FINGERPRINT:?}" "${STUDY_OUTPUT_DIR:?}"
cd "$CHECKOUT_DIR"
rm -rf dist
mkdir -p dist/assets
sed "s#@PREFIX@#${PREPEND_FINGERPRINT}#g" app/index.html.in > dist/index.html
cp app/runner.js dist/assets/runner-1.js
cp app/runner.css dist/assets/runner-1.css
cp -R dist/. "${STUDY_OUTPUT_DIR}/"
echo "built $(find dist -type f | wc -l) files" >&2
