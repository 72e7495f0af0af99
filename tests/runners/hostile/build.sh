#!/bin/bash
# A hostile experiment runner (issue 11): its build.sh tries every escape
# the builder's sandbox must stop, and writes what it reached to
# $STUDY_OUTPUT_DIR/report.txt, one line per attempt:
#   blocked NAME: what happened        the sandbox held
#   ESCAPED NAME: what it got          the sandbox failed (the test fails)
#   untested NAME: why                 the attempt could not be made
# It knows the server's paths and ports from targets.env, which the test
# writes into this repository before building it: a real attacker would
# guess them, so the sandbox must not rely on their being secret.
set -u
OUT=${STUDY_OUTPUT_DIR:?}
REPORT="$OUT/report.txt"
: > "$REPORT"
# shellcheck disable=SC1091
[ -f targets.env ] && . ./targets.env

blocked() { echo "blocked $1: $2" >> "$REPORT"; }
escaped() { echo "ESCAPED $1: $2" >> "$REPORT"; }

# 1. The server's environment: ours, and every process's we can see.
if env | grep -qE '^(DATABASE_URL|REDIS_URL|STORAGE_LINK_SECRET|S3_SECRET_ACCESS_KEY|GITHUB_TOKEN)='; then
    escaped env "a server secret is in the build's environment"
else
    blocked env "$(env | cut -d= -f1 | sort | tr '\n' ' ')"
fi
hits=$(grep -l -a -E 'DATABASE_URL|STORAGE_LINK_SECRET' /proc/[0-9]*/environ 2>/dev/null | head -3)
if [ -n "$hits" ]; then escaped proc-environ "$hits"; else blocked proc-environ "no process shows DATABASE_URL"; fi

# 2. The host's processes: the server's command line anywhere in /proc.
seen=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c -x -E 'studyhub|postgres|redis-server' || true)
npids=$(ls -d /proc/[0-9]* | wc -l)
if [ "$seen" != "0" ]; then escaped proc "the server's processes are visible ($npids pids)"
else blocked proc "$npids pids visible, none of the host's"; fi

# 3. Files: the server's folder, var/, storage, other checkouts, secrets.
for f in "${SERVER_DIR:-}" "${VAR_DIR:-}" "${STORAGE_DIR:-}" "${CHECKOUTS:-}" "${SECRET_FILE:-}" \
         /etc/shadow /etc/passwd /root /home; do
    [ -n "$f" ] || continue
    if [ -e "$f" ]; then
        if [ -r "$f" ] && { [ -d "$f" ] && ls "$f" >/dev/null 2>&1 || cat "$f" >/dev/null 2>&1; }; then
            escaped "read:$f" "it exists and can be read"
        else
            escaped "see:$f" "it exists in the sandbox"
        fi
    else
        blocked "read:$f" "not there"
    fi
done
# 4. The admin socket.
if [ -n "${ADMIN_SOCKET:-}" ] && [ -e "$ADMIN_SOCKET" ]; then
    escaped admin-socket "$ADMIN_SOCKET is reachable"
else
    blocked admin-socket "no such path"
fi

# 5. Writes outside the output folder.
for d in /checkout "$CHECKOUT_DIR" "${VAR_DIR:-/nonexistent}" "${CHECKOUTS:-/nonexistent}" /usr /etc /; do
    if (echo pwned > "$d/hostile-was-here") 2>/dev/null; then
        escaped "write:$d" "wrote $d/hostile-was-here"
    else
        blocked "write:$d" "refused"
    fi
done

# 6. Root and capabilities.
if [ "$(id -u)" = 0 ]; then escaped uid "uid 0 inside"; else blocked uid "uid $(id -u)"; fi
cap=$(awk '/^CapEff/ {print $2}' /proc/self/status)
if [ "$cap" != "0000000000000000" ]; then escaped caps "CapEff $cap"; else blocked caps "CapEff $cap"; fi
if unshare -U -r true 2>/dev/null; then escaped userns "made a user namespace (root inside)"
else blocked userns "refused"; fi
if mount -t tmpfs none /tmp 2>/dev/null; then escaped mount "mounted a tmpfs"; else blocked mount "refused"; fi

# 7. The network: the server's, PostgreSQL's and Redis's ports on loopback.
for p in ${PORTS:-}; do
    if timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
        escaped "net:$p" "connected to 127.0.0.1:$p"
    else
        blocked "net:$p" "no connection"
    fi
done

# 8. A process left behind: a daemonised sleep in a session of its own.
setsid bash -c 'exec -a hostile-leftover sleep 300' </dev/null >/dev/null 2>&1 &
disown
blocked leftover-started "the test checks that it is gone after the build"

# 9. A fork bomb: as many sleeping children as the limits allow (python:
# bash retries a failed fork for half a minute).
n=$(python3 - "${FORK_TRIES:-400}" <<'PY' 2>/dev/null
import os, sys, time
kids = []
try:
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
except OSError:
    pass
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
print(len(kids))
PY
)
if [ -z "$n" ]; then echo "untested fork-bomb: python3 did not run" >> "$REPORT"
elif [ "$n" -ge "${MAX_PROCS:-100000}" ]; then escaped fork-bomb "$n processes"
else blocked fork-bomb "$n processes before the limit"; fi

# 10. Memory beyond the limit (one process).
mb=$(( ${MEMORY_MB:-4096} + 64 ))
err=$(python3 -c "b = bytearray($mb * 1024 * 1024)" 2>&1)
case $? in
    0) escaped memory "allocated $mb MiB" ;;
    *) if echo "$err" | grep -q MemoryError; then blocked memory "could not allocate $mb MiB"
       else echo "untested memory: $err" | head -1 >> "$REPORT"; fi ;;
esac

# 11. The disk: one file past the limit, in the output and in /tmp.
mb=$(( ${OUTPUT_MB:-2048} + 8 ))
for d in "$OUT" /tmp; do
    (dd if=/dev/zero of="$d/fill" bs=1M count="$mb" status=none) 2>/dev/null
    size=$(stat -c %s "$d/fill" 2>/dev/null || echo 0)
    rm -f "$d/fill"
    if [ "$size" -ge $((mb * 1024 * 1024)) ]; then escaped "disk:$d" "wrote $size bytes"
    else blocked "disk:$d" "stopped at $size bytes"; fi
done

echo "<!doctype html><title>hostile</title>" > "$OUT/index.html"
echo "hostile build: $(grep -c '^ESCAPED' "$REPORT") escapes so far" >&2

# 12. The disk again, last: many files each under the per-file limit, three
# times the total allowed; the builder must kill the build for it (this
# line is then the report's last), else it is an escape.
echo "pending disk-total: filling $(( ${OUTPUT_MB:-2048} * 3 )) MiB in 1 MiB files" >> "$REPORT"
for i in $(seq 1 $(( ${OUTPUT_MB:-2048} * 3 ))); do
    dd if=/dev/zero of="fill-$i" bs=1M count=1 status=none 2>/dev/null || break
done
sleep 30
escaped disk-total "still running 30 s after filling $(du -sh . | cut -f1)"
