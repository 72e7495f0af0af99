#!/bin/bash
# A build that never ends (a registry that never answers): only
# BUILD_TIMEOUT_S stops it, and it must take the child sleep with it.
echo "waiting for the package registry..."
if [ "${CHECKOUT_DIR:-}" = /checkout ]; then
    # In the local runner's sandbox: also a daemonised child in a session
    # and process group of its own, which a kill of the build's group does
    # not reach; the sandbox's PID namespace must take it down.
    setsid sleep 1000000 </dev/null >/dev/null 2>&1 &
fi
sleep 1000000
echo "never reached"
