#!/usr/bin/env python3
"""run_all: discover tests/e2e/test_*.py, run them with unittest, and print
`E2E: N passed, N failed` (tools/test reads it). Exit code 1 on any failure.

  python3 tests/e2e/run_all.py [--pattern 'test_foo*.py'] [-k substring] [-q]

The services are described by environment variables (see harness.py);
tools/test sets them.
"""

import argparse
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


class TimingResult(unittest.TextTestResult):
    """Adds each test's duration to the verbose listing."""

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _took(self):
        return f" ({time.monotonic() - self._t0:.1f} s)"

    def addSuccess(self, test):
        if self.showAll:
            unittest.TestResult.addSuccess(self, test)
            self.stream.writeln("ok" + self._took())
            self.stream.flush()
        else:
            super().addSuccess(test)


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", default="test_*.py")
    ap.add_argument("-k", dest="keyword", action="append", default=[],
                    help="only tests whose id contains this (repeatable)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()

    if not os.access(harness.STUDYHUB_BIN, os.X_OK):
        print(f"studyhub binary not found: {harness.STUDYHUB_BIN}", file=sys.stderr)
        print("E2E: 0 passed, 1 failed")
        return 1

    loader = unittest.TestLoader()
    suite = loader.discover(start_dir=HERE, pattern=args.pattern, top_level_dir=HERE)
    if args.keyword:
        tests = [t for t in iter_tests(suite) if any(k in t.id() for k in args.keyword)]
        suite = unittest.TestSuite(tests)

    print(f"studyhub: {harness.STUDYHUB_BIN}"
          f"{' (sanitizers)' if harness.ASAN else ''}; PostgreSQL port {harness.PG_PORT};"
          f" Redis port {harness.REDIS_PORT}; logs in {harness.tmp_root()}", flush=True)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=1 if args.quiet else 2,
                                     resultclass=TimingResult)
    # SIGTERM (from tools/test's timeout) ends the run like Ctrl-C; either
    # way no server or Redis started by a test is left behind.
    signal.signal(signal.SIGTERM, interrupted)
    t0 = time.monotonic()
    try:
        result = runner.run(suite)
    except KeyboardInterrupt:
        harness.kill_all()
        print("\nE2E: interrupted", flush=True)
        # Die of SIGINT so the calling shell stops too (it ignores a child
        # that merely exits 130 after Ctrl-C).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    finally:
        harness.kill_all()
    harness.cleanup_tmp()

    # A test counts once however many of its subtests fail; errors outside
    # any test (setUpClass, class cleanups, a module that fails to import)
    # count one each.
    failing, other = set(), 0
    for t, _ in result.failures + result.errors:
        if isinstance(t, unittest.case._SubTest):
            t = t.test_case
        if isinstance(t, unittest.TestCase):
            failing.add(t.id())
        else:
            other += 1
    for t in result.unexpectedSuccesses:
        failing.add(t.id())
    bad = len(failing) + other
    passed = max(0, result.testsRun - len(failing) - len(result.skipped))
    if result.testsRun == 0 and bad == 0:
        print("no end-to-end test was found", file=sys.stderr)
        bad = 1
    line = f"E2E: {passed} passed, {bad} failed"
    if result.skipped:
        line += f", {len(result.skipped)} skipped"
    print(f"(end-to-end run took {time.monotonic() - t0:.1f} s)")
    print(line, flush=True)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
