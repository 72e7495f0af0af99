"""The README stays true: every configuration variable the server knows
(studyhub --config-markdown, generated from the one config table) is in it,
with its default, and so are the two commands."""
import os
import re
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class TestReadme(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(ROOT, "README"), encoding="utf-8") as f:
            self.readme = f.read()

    def test_every_variable_is_documented_with_its_default(self):
        out = subprocess.run([os.environ["STUDYHUB_BIN"], "--config-markdown"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line for line in out.splitlines() if line.startswith("| `")]
        self.assertGreater(len(rows), 10)
        for row in rows:
            name = re.match(r"\| `([A-Z0-9_]+)`", row).group(1)
            self.assertIn(row, self.readme, "README lacks (or has a stale row for) " + name)

    def test_the_two_commands(self):
        self.assertIn("tools/run", self.readme)
        self.assertIn("tools/test", self.readme)

    def test_help_lists_the_same_variables(self):
        out = subprocess.run([os.environ["STUDYHUB_BIN"], "--help"],
                             capture_output=True, text=True, check=True).stdout
        for name in re.findall(r"\| `([A-Z0-9_]+)`", self.readme):
            if name in ("PG_PORT", "REDIS_PORT"):
                continue
            self.assertIn(name, out)


if __name__ == "__main__":
    unittest.main()
