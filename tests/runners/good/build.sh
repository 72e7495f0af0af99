#!/bin/bash
# A stand-in for ember-lookit-frameplayer's build: a small site with the
# runner's prefix (/runners/<cache key>/) compiled into its asset URLs, as
# `ember build --environment=production` with PREPEND_FINGERPRINT does.
set -euo pipefail
: "${CHECKOUT_DIR:?}" "${PREPEND_FINGERPRINT:?}" "${STUDY_OUTPUT_DIR:?}"
echo "building $(basename "$CHECKOUT_DIR") in $(pwd) for ${PREPEND_FINGERPRINT}"
if [ -n "${BUILD_SLEEP_S:-}" ]; then
    echo "sleeping ${BUILD_SLEEP_S} s (BUILD_SLEEP_S)"
    sleep "${BUILD_SLEEP_S}"
fi
rm -rf dist
mkdir -p dist/assets dist/img
sed "s#@PREFIX@#${PREPEND_FINGERPRINT}#g" app/index.html.in > dist/index.html
cp app/app.js dist/assets/frameplayer-3f2a9c.js
cp app/app.css dist/assets/frameplayer-77e1b0.css
cp app/logo.png dist/img/logo.png
printf '{"sha": "%s", "prefix": "%s"}\n' \
    "${RUNNER_SHA:-}" "${PREPEND_FINGERPRINT}" > dist/build-info.json
cp -R dist/. "${STUDY_OUTPUT_DIR}/"
echo "built $(find dist -type f | wc -l) files" >&2
