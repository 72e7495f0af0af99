#!/bin/bash
# The cookie runner's build: the study's prefix compiled into index.html,
# as the demo runner's (static/runners/demo/build.sh).
set -euo pipefail
: "${CHECKOUT_DIR:?}" "${PREPEND_FINGERPRINT:?}" "${STUDY_OUTPUT_DIR:?}"
cd "$CHECKOUT_DIR"
rm -rf dist
mkdir -p dist/assets
sed "s#@PREFIX@#${PREPEND_FINGERPRINT}#g" app/index.html.in > dist/index.html
cp app/runner.js dist/assets/cookie-runner-1.js
cp -R dist/. "${STUDY_OUTPUT_DIR}/"
