"""The step's logic, natively: `python3 -m unittest` (no wasm, no runner).
cordon_sdk.testing stands in for the runner's secrets and report."""

import hashlib
import hmac
import os
import tempfile
import unittest

from cordon_sdk import testing

import app


class Step(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_summary_and_its_tag(self):
        with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as out:
            with open(os.path.join(src, "a.csv"), "w") as f:
                f.write("id,x\n1,2\n")
            testing.grant_secret("summary-key", b"a-test-key-of-16+", ["hmac"])
            app.step(testing.context([], [("/in", src, False), ("/out", out, True)]))
            with open(os.path.join(out, "summary.json"), "rb") as f:
                text = f.read()
            self.assertEqual(text, b'{"bytes": 9, "files": 1, "lines": 2}\n')
            with open(os.path.join(out, "summary.json.hmac")) as f:
                tag = f.read().strip()
            self.assertEqual(tag, hmac.new(b"a-test-key-of-16+", text, hashlib.sha256).hexdigest())
            self.assertEqual(testing.metrics()["lines"], 2.0)

    def test_without_the_secret_the_step_fails(self):
        with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as out:
            ctx = testing.context([], [("/in", src, False), ("/out", out, True)])
            with self.assertRaises(Exception) as e:
                app.step(ctx)
            self.assertIn("not granted", str(e.exception))


if __name__ == "__main__":
    unittest.main()
