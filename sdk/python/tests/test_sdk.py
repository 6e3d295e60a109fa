"""Native tests of the Python SDK: the doubles behave as the runner does."""

import hashlib
import hmac
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import cordon_sdk as cordon  # noqa: E402
from cordon_sdk import http, secrets, testing  # noqa: E402


class Secrets(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_refusals_match_the_runner(self):
        with self.assertRaises(secrets.NotGranted):
            secrets.get("nope")
        testing.grant_secret("k", b"0123456789abcdef", ["hmac"])
        k = secrets.get("k")
        self.assertEqual(repr(k), "Secret('k')")
        with self.assertRaises(secrets.Denied):
            k.reveal()
        with self.assertRaises(secrets.Denied):
            k.sign_ed25519(b"x")
        self.assertEqual(str(secrets.Denied()), "this use of the secret is not granted")

    def test_hmac_is_the_real_hmac(self):
        testing.grant_secret("k", "Jefe", ["hmac"])
        tag = secrets.get("k").hmac_sha256(b"what do ya want for nothing?")
        self.assertEqual(
            tag.hex(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )
        self.assertEqual(tag, hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).digest())


class Report(unittest.TestCase):
    def test_facts_are_kept(self):
        testing.reset()
        cordon.report.metric("rows", 3)
        cordon.report.annotate("model", "linear")
        self.assertEqual(testing.metrics(), {"rows": 3.0})
        self.assertEqual(testing.annotations(), {"model": "linear"})


class Http(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_relative_redirects_resolve_per_rfc_3986(self):
        testing.respond("GET", "http://h/v1/latest", 302, headers={"location": "../v2/m"})
        testing.respond("GET", "http://h/v2/m", 200, b"weights")
        resp = http.get("http://h/v1/latest")
        self.assertEqual(resp.body, b"weights")
        self.assertEqual([r.url for r in testing.sent()], ["http://h/v1/latest", "http://h/v2/m"])

    def test_unanswered_is_refused_and_placeholders_are_sent_as_is(self):
        testing.grant_secret("token", "s3cr3t", ["http-header"])
        p = secrets.get("token").http_header_placeholder()
        with self.assertRaises(http.Refused):
            http.request("PUT", "http://elsewhere/x", headers={"Authorization": f"Bearer {p}"})
        self.assertEqual(testing.sent()[0].headers, [("authorization", f"Bearer {p}".encode())])
        with self.assertRaises(http.BadUrl):
            http.get("ftp://h/x")


class Mounts(unittest.TestCase):
    def test_mounts_and_options(self):
        ctx = testing.context(["--key", "k", "--n=3"], [("/in", "/tmp/a", False), ("/out", "/tmp/b", True)])
        self.assertEqual(ctx.option("--key"), "k")
        self.assertEqual(ctx.option("--n"), "3")
        self.assertEqual(ctx.mount("/in/").path, "/tmp/a")
        self.assertEqual(ctx.output().guest, "/out")
        with self.assertRaises(cordon.MountError) as e:
            ctx.mount("/data")
        self.assertIn("grants /in, /out", str(e.exception))

    def test_an_error_exits_1_with_its_message(self):
        def step(ctx):
            raise ValueError("bad row 3")

        with self.assertRaises(SystemExit) as e:
            cordon.run(step)
        self.assertEqual(e.exception.code, 1)


if __name__ == "__main__":
    unittest.main()
