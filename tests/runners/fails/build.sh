#!/bin/bash
# A build that writes its output and then fails, like an ember build whose
# last step breaks (lookit-api#503: this must not look like success).
: "${STUDY_OUTPUT_DIR:?}"
mkdir -p dist
echo '<!DOCTYPE html><title>half-built</title>' > dist/index.html
cp -R dist/. "${STUDY_OUTPUT_DIR}/"
echo "yarn install v1.22.19"
echo "Build Error (broccoli-persistent-filter:Babel) in frameplayer/app.js" >&2
echo "ember build failed: Unexpected token (12:4)" >&2
exit 1
