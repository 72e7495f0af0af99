#!/bin/bash
# A build that never ends (a registry that never answers): only
# BUILD_TIMEOUT_S stops it, and it must take the child sleep with it.
echo "waiting for the package registry..."
sleep 1000000
echo "never reached"
