"""diagnostics.parse.headers.authres: Authentication-Results values, comments and quotes."""

from __future__ import annotations

from diagnostics.parse.headers.authres import (
    parse_authentication_results,
    parse_authentication_results_value,
)
from tests.parse.headers.samples import (
    application,
)


def test_authentication_results_with_comments_quotes_and_several_headers() -> None:
    message = (
        b"Authentication-Results: mx.m.personio.de 1;\r\n"
        b'\tdkim=fail reason="signature verification failed; body hash" (2048-bit key; unprotected)\r\n'
        b"\t header.d=example.org header.s=mail2026 header.b=Qm9n;\r\n"
        b"\tspf=pass (mx.m.personio.de: domain of x designates 192.0.2.25 as permitted sender)\r\n"
        b'\t smtp.mailfrom="SRS0=Hk3d=TT=example.org=max@acme.example";\r\n'
        b"\tdmarc=pass (p=none dis=none) header.from=example.org\r\n"
        b"Authentication-Results: spf=pass (sender IP is 198.51.100.7)\r\n"
        b" smtp.mailfrom=example.org; dkim=pass (signature was verified)\r\n"
        b" header.d=example.org;dmarc=pass action=none header.from=example.org;compauth=pass reason=100\r\n"
        b"Authentication-Results: mail.example.org; none\r\n" + application()
    )
    results = parse_authentication_results(message)
    assert [(r.authserv_id, r.method, r.result, r.reason, r.properties) for r in results] == [
        (
            "mx.m.personio.de",
            "dkim",
            "fail",
            "signature verification failed; body hash",
            (("header.d", "example.org"), ("header.s", "mail2026"), ("header.b", "Qm9n")),
        ),
        (
            "mx.m.personio.de",
            "spf",
            "pass",
            None,
            (("smtp.mailfrom", "SRS0=Hk3d=TT=example.org=max@acme.example"),),
        ),
        ("mx.m.personio.de", "dmarc", "pass", None, (("header.from", "example.org"),)),
        (None, "spf", "pass", None, (("smtp.mailfrom", "example.org"),)),
        (None, "dkim", "pass", None, (("header.d", "example.org"),)),
        (None, "dmarc", "pass", None, (("action", "none"), ("header.from", "example.org"))),
        (None, "compauth", "pass", "100", ()),
    ]
    assert results[1].get("smtp.mailfrom") == "SRS0=Hk3d=TT=example.org=max@acme.example"
    assert results[1].get("header.d") is None
    assert results[0].describe() == (
        "dkim=fail reason='signature verification failed; body hash' "
        "(header.d=example.org header.s=mail2026 header.b=Qm9n)"
    )


def test_authentication_results_value_edge_cases() -> None:
    assert parse_authentication_results_value("") == ()
    assert parse_authentication_results_value("mx.example.org; none") == ()
    (result,) = parse_authentication_results_value(
        "mx.example.org; dkim / 1 = pass header.i = @x.example"
    )
    assert (result.method, result.result, result.properties) == (
        "dkim",
        "pass",
        (("header.i", "@x.example"),),
    )
