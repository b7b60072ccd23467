"""The account file loader: valid files load into typed values, each mistake is named exactly."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from diagnostics.cli import main
from diagnostics.config import AccountConfig, load_config, parse_config
from diagnostics.errors import ConfigError, ConfigProblem, SecretError
from diagnostics.secrets import MASK, Secret

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "configs"
ACME = FIXTURES / "acme.yaml"
INVALID = FIXTURES.parent / "invalid-configs"

UNKNOWN_KEY_FOUND = "an unknown key (its value is not shown)"


@dataclass(frozen=True)
class Case:
    """What loading one file of ``fixtures/invalid-configs/`` must report."""

    file: str
    key: str
    line: int | None
    expected: str  # a fragment of what was expected
    found: str  # exactly what was found
    error: type[ConfigError] = ConfigError


CASES = [
    Case("missing_key", "company.name", 5, "this key to be present", "nothing"),
    Case(
        "unknown_key",
        "company.custom_adress",
        7,
        "no such key (unknown keys are errors; check the spelling)",
        UNKNOWN_KEY_FOUND,
    ),
    Case(
        "bad_email",
        "company.custom_address",
        7,
        "an e-mail address like jobs@company.example (An email address must have an @-sign.)",
        "'jobs.acme.example'",
    ),
    Case("bad_port", "company.smtp.port", 10, "a port number from 1 to 65535", "70000"),
    Case("port_as_text", "company.smtp.port", 10, "a port number from 1 to 65535", "'587'"),
    Case(
        "bad_encryption",
        "company.smtp.encryption",
        11,
        "one of starttls, tls (implicit TLS, 'SSL'), none",
        "'ssl/tls'",
    ),
    Case(
        "bad_cidr_prefix",
        "company.allowlist",
        8,
        "IP networks in CIDR notation like 3.121.59.239/32 "
        "('3.121.59.239/33' does not appear to be an IPv4 or IPv6 network)",
        "'3.121.59.239/33'",
    ),
    Case(
        "bad_cidr_host_bits",
        "company.allowlist",
        8,
        "IP networks in CIDR notation like 3.121.59.239/32 (10.0.0.1/8 has host bits set)",
        "'10.0.0.1/8'",
    ),
    Case(
        "unknown_subcompany",
        "positions[1].subcompany",
        11,
        "a subcompany defined under subcompanies ('Acme Retail GmbH')",
        "'Acme Outlet GmbH'",
    ),
    Case(
        "missing_env_var",
        "company.smtp.password",
        13,
        "environment variable ACME_UNSET_PASSWORD to be set and non-empty",
        "ACME_UNSET_PASSWORD unset or empty",
        SecretError,
    ),
    Case(
        "literal_password",
        "company.smtp.password",
        13,
        "a reference ${ENV_VAR} (or use password_file: PATH)",
        "a literal value (not shown)",
    ),
    Case(
        "password_and_password_file",
        "company.smtp.password_file",
        14,
        "either password or password_file, not both",
        "both password and password_file",
    ),
    Case(
        "missing_password_file",
        "company.smtp.password_file",
        13,
        "a readable file holding the password",
        f"{INVALID / 'no-such-password-file.txt'}: No such file or directory",
        SecretError,
    ),
    Case(
        "unknown_profile",
        "platform.profile",
        3,
        "one of the built-in profiles: personio",
        "'workday'",
    ),
    Case(
        "bad_account_name",
        "platform.account",
        4,
        "the platform account name: lower-case letters, digits and -",
        "'Acme_GmbH'",
    ),
    Case(
        "yaml_syntax_error",
        "(file)",
        8,
        "valid YAML",
        "a syntax error: expected ',' or ']', but got ':'",
    ),
    Case("not_a_mapping", "(top level)", 1, "a mapping with platform, company", "list"),
    Case("empty_file", "(top level)", 1, "a mapping with platform, company", "an empty file"),
    Case(
        "duplicate_subcompany",
        "subcompanies[2].name",
        11,
        "subcompany names that are unique and differ from the company",
        "'Acme Retail GmbH' twice",
    ),
    Case(
        "crlf_in_address",
        "company.custom_address",
        7,
        "an e-mail address without control characters (CR, LF, TAB, ...)",
        r"'jobs@acme.example\r\nBcc: x@evil.example'",
    ),
]

# The literal written in fixtures/invalid-configs/literal_password.yaml.
FIXTURE_LITERAL_PASSWORD = "Lit3ral-Pa55word-q7Zx"


def _token() -> str:
    return f"tok-{secrets.token_hex(12)}"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Random values for the variables the fixtures reference, set in os.environ too (the CLI
    reads it); ACME_UNSET_PASSWORD is guaranteed unset."""
    env = {"ACME_SMTP_PASSWORD": _token(), "ACME_RETAIL_SMTP_PASSWORD": _token()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACME_UNSET_PASSWORD", raising=False)
    return env


def _load_error(path: Path, environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    return info.value


def _run_audit(
    config: Path, report_dir: Path, *extra: str, options: tuple[str, ...] = ()
) -> tuple[int, str, str, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    # main() installs its own root log handler: put the test runner's back, close ours.
    root, mail_log = logging.getLogger(), logging.getLogger("mail.log")
    handlers, level, mail_level = root.handlers[:], root.level, mail_log.level
    try:
        code = main(
            [*extra, "audit", str(config), "--report-dir", str(report_dir), *options],
            out=out,
            err=err,
        )
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        mail_log.setLevel(mail_level)
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    return code, out.getvalue(), err.getvalue(), report


# -- the invalid fixtures ----------------------------------------------------------------------


def test_every_invalid_fixture_has_a_case_and_says_what_is_wrong() -> None:
    files = sorted(INVALID.glob("*.yaml"))
    assert sorted(p.stem for p in files) == sorted(c.file for c in CASES)
    assert len(files) >= 14
    for path in files:
        first, *_ = path.read_text(encoding="utf-8").splitlines()
        assert first.startswith("# "), path.name
        assert len(first) > len("# ") + 10, path.name


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_invalid_file_names_key_line_expected_and_found(
    case: Case, environ: dict[str, str]
) -> None:
    path = INVALID / f"{case.file}.yaml"
    error = _load_error(path, environ)

    assert type(error) is case.error
    assert error.file == str(path)
    assert len(error.problems) == 1, str(error)
    problem = error.problems[0]
    assert problem.key == case.key
    assert problem.line == case.line
    assert case.expected in problem.expected
    assert problem.found == case.found
    assert str(error) == (
        f"{path}:{case.line}: key '{case.key}': expected {problem.expected}; found {case.found}"
    )
    # One line only: nothing from the file (like an embedded CR LF) breaks the message up.
    assert "\n" not in str(error)
    assert "\r" not in str(error)


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_audit_of_invalid_file_exits_2_with_the_message(
    case: Case, environ: dict[str, str], tmp_path: Path
) -> None:
    path = INVALID / f"{case.file}.yaml"
    message = str(_load_error(path, environ))

    code, out, err, report = _run_audit(path, tmp_path / "report")

    assert code == 2
    assert err == message + "\n"
    assert f"{path}:{case.line}: key '{case.key}': expected " in err
    assert case.expected in err
    assert f"; found {case.found}" in err
    assert "verdict: fail (1 fail)" in out
    assert report["verdict"] == "fail"
    assert report["config_file"] == str(path)
    findings = report["findings"]
    assert isinstance(findings, list)
    assert len(findings) == 1
    finding = findings[0]
    assert finding["check"] == "config.schema"
    assert finding["status"] == "fail"
    assert finding["subject"] == case.file
    assert finding["detail"] == message
    assert finding["evidence"]["key"] == case.key
    assert finding["evidence"]["line"] == case.line
    assert finding["evidence"]["found"] == case.found


def test_literal_password_of_the_fixture_appears_in_no_output(
    environ: dict[str, str], tmp_path: Path
) -> None:
    path = INVALID / "literal_password.yaml"
    assert FIXTURE_LITERAL_PASSWORD in path.read_text(encoding="utf-8")
    log_file = tmp_path / "maildiag.log"

    code, out, err, report = _run_audit(path, tmp_path / "report", "--log-file", str(log_file))

    assert code == 2
    assert "found a literal value (not shown)" in err
    texts = [out, err, json.dumps(report), (tmp_path / "report" / "report.json").read_text()]
    texts.append(log_file.read_text(encoding="utf-8"))
    texts.append(str(_load_error(path, environ)))
    for text in texts:
        assert FIXTURE_LITERAL_PASSWORD not in text


# -- the valid example -------------------------------------------------------------------------


def test_acme_loads_into_typed_values(environ: dict[str, str]) -> None:
    config = load_config(ACME, environ=environ)

    assert isinstance(config, AccountConfig)
    assert config.platform.profile == "personio"
    assert config.platform.account == "acme"
    assert config.inbound_address == "acme-jobs@m.personio.de"
    assert config.profile.name == "personio"

    company = config.company
    assert company.name == "Acme GmbH"
    assert company.sender_name == "employee"
    assert company.custom_address == "jobs@acme.example"
    assert company.allowlist == (
        ipaddress.IPv4Network("3.121.59.239/32"),
        ipaddress.IPv4Network("3.65.146.216/32"),
        ipaddress.IPv4Network("18.158.122.164/32"),
    )
    smtp = company.smtp
    assert smtp is not None
    assert smtp.host == "smtp.acme.example"
    assert smtp.port == 587
    assert type(smtp.port) is int
    assert smtp.encryption == "starttls"
    assert smtp.account == "jobs@acme.example"
    assert isinstance(smtp.password, Secret)
    assert smtp.password.reveal() == environ["ACME_SMTP_PASSWORD"]
    assert smtp.password.source == "env:ACME_SMTP_PASSWORD"

    assert [s.name for s in config.subcompanies] == ["Acme Retail GmbH", "Acme Labs GmbH"]
    retail = config.subcompany("Acme Retail GmbH")
    assert retail.custom_address == "jobs@retail.acme.example"
    assert retail.allowlist is None
    assert retail.smtp is not None
    assert (retail.smtp.host, retail.smtp.port, retail.smtp.encryption) == (
        "smtp.acme.example",
        465,
        "tls",
    )
    assert retail.smtp.account == "jobs@retail.acme.example"
    assert retail.smtp.password.reveal() == environ["ACME_RETAIL_SMTP_PASSWORD"]
    labs = config.subcompany("Acme Labs GmbH")
    assert (labs.custom_address, labs.smtp, labs.allowlist) == (None, None, None)
    with pytest.raises(KeyError):
        config.subcompany("Acme GmbH")

    assert [(p.title, p.subcompany) for p in config.positions] == [
        ("Store Manager Berlin", "Acme Retail GmbH"),
        ("Backend Engineer", "Acme Labs GmbH"),
        ("Office Manager", None),
    ]
    assert [(e.name, e.email) for e in config.employees] == [
        ("Jürgen Müller", "j.mueller@acme.example"),
        ("Zoë O'Brien", "z.obrien@acme.example"),
    ]


def test_acme_secrets_are_masked_in_every_rendering(environ: dict[str, str]) -> None:
    config = load_config(ACME, environ=environ)
    assert config.company.smtp is not None
    password = config.company.smtp.password

    assert str(password) == MASK
    assert repr(password) == f"Secret({MASK}, source='env:ACME_SMTP_PASSWORD')"
    assert f"{password}" == MASK
    assert f"{password!r}" == repr(password)
    for text in (repr(config), str(config), repr(config.company), f"{config.company.smtp}"):
        assert environ["ACME_SMTP_PASSWORD"] not in text
        assert environ["ACME_RETAIL_SMTP_PASSWORD"] not in text
    assert repr(config).count(MASK) == 2


def test_config_is_frozen(environ: dict[str, str]) -> None:
    config = load_config(ACME, environ=environ)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        config.company.name = "Other GmbH"


def _acme_text(**replace: str) -> str:
    text = ACME.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new, 1)
    return text


@pytest.mark.parametrize(
    ("written", "loaded"),
    [
        ("SSL", "tls"),
        ("ssl", "tls"),
        ("TLS", "tls"),
        ("implicit", "tls"),
        ("STARTTLS", "starttls"),
        ("TLS/STARTTLS", "starttls"),
        (" StartTLS ", "starttls"),
        ("None", "none"),
        ("none", "none"),
    ],
)
def test_encryption_is_normalised(written: str, loaded: str, environ: dict[str, str]) -> None:
    text = _acme_text(**{"encryption: starttls": f'encryption: "{written}"'})
    config = parse_config(text, source="acme.yaml", environ=environ)
    assert config.company.smtp is not None
    assert config.company.smtp.encryption == loaded


@pytest.mark.parametrize("written", ["ssl/tls", "TLS1.2", "starttls-required", "yes", ""])
def test_unknown_encryption_is_an_error(written: str, environ: dict[str, str]) -> None:
    text = _acme_text(**{"encryption: starttls": f'encryption: "{written}"'})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="acme.yaml", environ=environ)
    [problem] = info.value.problems
    assert problem.key == "company.smtp.encryption"
    assert problem.found == repr(written)
    assert problem.line == 13


@pytest.mark.parametrize("port", ["0", "65536", "-1", "true", "587.0"])
def test_port_outside_range_or_not_whole_is_an_error(port: str, environ: dict[str, str]) -> None:
    text = _acme_text(**{"port: 587": f"port: {port}"})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="acme.yaml", environ=environ)
    [problem] = info.value.problems
    assert problem.key == "company.smtp.port"
    assert "1 to 65535" in problem.expected


def test_password_file_is_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    folder = tmp_path / "accounts"
    (folder / "secrets").mkdir(parents=True)
    token = _token()
    (folder / "secrets" / "acme-smtp.txt").write_text(f"{token}\nsecond line\n", encoding="utf-8")
    config_path = folder / "acme.yaml"
    config_path.write_text(
        _acme_text(**{"password: ${ACME_SMTP_PASSWORD}": "password_file: secrets/acme-smtp.txt"}),
        encoding="utf-8",
    )
    # Another working directory: a cwd-relative lookup would not find the file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(config_path, environ=environ)

    assert config.company.smtp is not None
    password = config.company.smtp.password
    assert password.reveal() == token
    assert password.source == f"file:{folder / 'secrets' / 'acme-smtp.txt'}"
    assert token not in repr(config)


def test_password_file_may_be_absolute(tmp_path: Path, environ: dict[str, str]) -> None:
    secret_file = tmp_path / "pw.txt"
    token = _token()
    secret_file.write_text(token, encoding="utf-8")
    text = _acme_text(**{"password: ${ACME_SMTP_PASSWORD}": f"password_file: {secret_file}"})
    config = parse_config(text, source="acme.yaml", environ=environ, base_dir=tmp_path / "x")
    assert config.company.smtp is not None
    assert config.company.smtp.password.reveal() == token


def test_password_file_with_empty_first_line_is_an_error(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    (tmp_path / "pw.txt").write_text("\nlater\n", encoding="utf-8")
    text = _acme_text(**{"password: ${ACME_SMTP_PASSWORD}": "password_file: pw.txt"})
    with pytest.raises(SecretError) as info:
        parse_config(text, source="acme.yaml", environ=environ, base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.key == "company.smtp.password_file"
    assert problem.expected == "a password on the first line"
    assert problem.found == f"{tmp_path / 'pw.txt'} is empty"
    assert problem.line == 15


def test_empty_env_var_counts_as_unset(environ: dict[str, str]) -> None:
    with pytest.raises(SecretError) as info:
        load_config(ACME, environ={**environ, "ACME_SMTP_PASSWORD": ""})
    [problem] = info.value.problems
    assert problem.key == "company.smtp.password"
    assert problem.found == "ACME_SMTP_PASSWORD unset or empty"
    assert problem.line == 15


def test_missing_smtp_password_is_an_error(environ: dict[str, str]) -> None:
    text = _acme_text(**{"    password: ${ACME_SMTP_PASSWORD}\n": ""})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="acme.yaml", environ=environ)
    [problem] = info.value.problems
    assert problem.key == "company.smtp.password"
    assert problem.expected == "password: ${ENV_VAR} or password_file: PATH"
    assert problem.found == "neither"
    assert problem.line == 10  # the smtp block: the password line is not there


def test_subcompany_may_name_the_parent_company(environ: dict[str, str]) -> None:
    text = _acme_text(
        **{"{title: Office Manager}": "{title: Office Manager, subcompany: Acme GmbH}"}
    )
    config = parse_config(text, source="acme.yaml", environ=environ)
    assert config.positions[2].subcompany == "Acme GmbH"


def test_subcompany_named_like_the_company_is_an_error(environ: dict[str, str]) -> None:
    text = _acme_text(**{"- name: Acme Labs GmbH": "- name: Acme GmbH"})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="acme.yaml", environ=environ)
    [problem] = info.value.problems
    assert problem.key == "subcompanies[1].name"
    assert problem.line == 26


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    error = _load_error(path, {})
    assert [(p.key, p.expected, p.found, p.line) for p in error.problems] == [
        ("(file)", "a readable YAML file", "No such file or directory", None)
    ]
    assert (
        str(error)
        == f"{path}: key '(file)': expected a readable YAML file; found No such file or directory"
    )


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("company:\n  name: M\xfcller GmbH\n".encode("latin-1"))
    error = _load_error(path, {})
    [problem] = error.problems
    assert (problem.key, problem.expected) == ("(file)", "UTF-8 text")


def test_a_custom_address_on_a_special_use_domain_is_a_finding_not_a_file_error(
    environ: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "staging.yaml"
    path.write_text(
        _acme_text(**{"custom_address: jobs@acme.example": "custom_address: jobs@acme.test"}),
        encoding="utf-8",
    )
    assert load_config(path, environ=environ).company.custom_address == "jobs@acme.test"

    code, out, err, report = _run_audit(path, tmp_path / "report", options=("--only", "config"))

    assert (code, err) == (1, "")  # a finding (exit 1), not a file that did not load (exit 2)
    schema = [f for f in report["findings"] if f["check"] == "config.schema"]
    assert [(f["subject"], f["status"], f["cause"]) for f in schema] == [
        ("Acme GmbH", "fail", "dns_failure")
    ]
    assert schema[0]["title"] == "Custom address jobs@acme.test cannot receive candidates' mail"
    assert "Settings > Recruiting > Recruiting > General > Recruiting email settings" in out


# -- several problems at once ------------------------------------------------------------------

MANY_PROBLEMS = """\
platform:
  profile: workday
  account: acme
company:
  name: Acme GmbH
  custom_address: jobs.acme.example
  smtp:
    host: smtp.acme.example
    port: 70000
    encryption: ssl/tls
    account: jobs@acme.example
    password: Lit3ral-not-a-reference
  allowlist: [10.0.0.1/8]
subcompanies:
  - name: Acme Retail GmbH
    custom_adress: jobs@retail.acme.example
    smtp:
      host: smtp.acme.example
      port: 465
      encryption: tls
      account: jobs@retail.acme.example
      password: ${ACME_UNSET_PASSWORD}
employees:
  - {name: Jürgen Müller, email: "j.mueller@acme.example\\nBcc: x@evil.example"}
"""


def test_every_problem_in_a_file_is_reported_at_once(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MANY_PROBLEMS, source="many.yaml", environ=environ)
    error = info.value

    # A mix of secret and other problems is a plain ConfigError, not a SecretError.
    assert type(error) is ConfigError
    assert [(p.key, p.line) for p in error.problems] == [
        ("platform.profile", 2),
        ("company.custom_address", 6),
        ("company.smtp.port", 9),
        ("company.smtp.encryption", 10),
        ("company.smtp.password", 12),
        ("company.allowlist", 13),
        # pydantic reports unknown keys after the known ones of the same mapping.
        ("subcompanies[0].smtp.password", 22),
        ("subcompanies[0].custom_adress", 16),
        ("employees[0].email", 24),
    ]
    lines = str(error).splitlines()
    assert lines[0] == "many.yaml: 9 problem(s)"
    assert lines[1:] == [p.render("many.yaml") for p in error.problems]
    assert "Lit3ral-not-a-reference" not in str(error)


def test_a_bad_password_reference_does_not_hide_the_blocks_other_problems(
    environ: dict[str, str],
) -> None:
    # Regression: the password used to be resolved in a model validator that raised, so the
    # other keys of the same smtp block were never checked.
    text = _acme_text(
        **{"port: 587": "port: 70000", "${ACME_SMTP_PASSWORD}": "${ACME_UNSET_PASSWORD}"}
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="acme.yaml", environ=environ)
    assert type(info.value) is ConfigError
    assert [(p.key, p.found) for p in info.value.problems] == [
        ("company.smtp.port", "70000"),
        ("company.smtp.password", "ACME_UNSET_PASSWORD unset or empty"),
    ]


def test_only_secret_problems_make_a_secret_error(environ: dict[str, str]) -> None:
    with pytest.raises(SecretError) as info:
        load_config(ACME, environ={})
    assert [p.key for p in info.value.problems] == [
        "company.smtp.password",
        "subcompanies[0].smtp.password",
    ]


def test_problem_as_dict_and_render() -> None:
    problem = ConfigProblem("company.smtp.port", "a port", "70000", 10)
    assert problem.as_dict() == {
        "key": "company.smtp.port",
        "expected": "a port",
        "found": "70000",
        "line": 10,
    }
    assert (
        problem.render("a.yaml")
        == "a.yaml:10: key 'company.smtp.port': expected a port; found 70000"
    )
    assert (
        ConfigProblem("(file)", "x", "y").render("a.yaml")
        == "a.yaml: key '(file)': expected x; found y"
    )


# -- secrets never in messages, reports or logs -------------------------------------------------

SMTP_BLOCK = """\
platform:
  profile: personio
  account: acme
company:
  name: Acme GmbH
  custom_address: jobs@acme.example
  smtp:
    host: smtp.acme.example
    port: {port}
    encryption: starttls
    account: jobs@acme.example
{secret_lines}
subcompanies:
  - name: Acme Retail GmbH
    smtp:
      host: smtp.acme.example
      port: 465
      encryption: tls
      account: jobs@retail.acme.example
{sub_secret_lines}
"""

# (id, the company's secret lines, the subcompany's secret lines, port, expected problem keys)
LEAK_CASES = [
    (
        "literal",
        "    password: {token}",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password"],
    ),
    (
        "literal_in_list",
        "    password: [{token}]",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password"],
    ),
    (
        "literal_in_mapping",
        "    password: {{value: {token}}}",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password"],
    ),
    (
        "literal_and_file",
        "    password: {token}\n    password_file: pw.txt",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password_file"],
    ),
    (
        "literal_with_other_problems",
        "    password: {token}",
        "      password: {token}",
        70000,
        ["company.smtp.port", "company.smtp.password", "subcompanies[0].smtp.password"],
    ),
    (
        "misspelt_key_capital",
        "    Password: {token}",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password", "company.smtp.Password"],
    ),
    (
        "misspelt_key_beside_reference",
        "    password: ${{MAIN_PW}}\n    passwort: {token}",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.passwort"],
    ),
    (
        "resolved_env_with_other_problem",
        "    password: ${{MAIN_PW}}",
        "      password: ${{SUB_PW}}",
        70000,
        ["company.smtp.port"],
    ),
    (
        "file_holding_token_after_empty_line",
        "    password_file: later.txt",
        "      password: ${{SUB_PW}}",
        587,
        ["company.smtp.password_file"],
    ),
    (
        "unclosed_list_yaml_error",
        "    password: [{token}",
        "      password: ${{SUB_PW}}",
        587,
        ["(file)"],
    ),
]


@pytest.mark.parametrize(
    ("secret_lines", "sub_secret_lines", "port", "keys"),
    [case[1:] for case in LEAK_CASES],
    ids=[case[0] for case in LEAK_CASES],
)
def test_secret_values_appear_in_no_message_report_or_log(
    secret_lines: str,
    sub_secret_lines: str,
    port: int,
    keys: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, main_pw, sub_pw = _token(), _token(), _token()
    monkeypatch.setenv("MAIN_PW", main_pw)
    monkeypatch.setenv("SUB_PW", sub_pw)
    (tmp_path / "pw.txt").write_text(f"{token}\n", encoding="utf-8")
    (tmp_path / "later.txt").write_text(f"\n{token}\n", encoding="utf-8")
    config_path = tmp_path / "leaky.yaml"
    config_path.write_text(
        SMTP_BLOCK.format(
            port=port,
            secret_lines=secret_lines.format(token=token),
            sub_secret_lines=sub_secret_lines.format(token=token),
        ),
        encoding="utf-8",
    )
    # Each case puts a value under test where the loader reads it.
    assert (
        token in config_path.read_text(encoding="utf-8")
        or "later.txt" in secret_lines
        or "MAIN_PW" in secret_lines
    )

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        load_config(config_path, environ={"MAIN_PW": main_pw, "SUB_PW": sub_pw})
    assert [p.key for p in info.value.problems] == keys
    load_texts = [str(info.value), repr(info.value.problems), caplog.text]
    for problem in info.value.problems:
        load_texts += [problem.expected, problem.found, json.dumps(problem.as_dict())]

    log_file = tmp_path / "maildiag.log"
    code, out, err, report = _run_audit(
        config_path, tmp_path / "report", "--log-file", str(log_file)
    )
    assert code == 2
    assert err == str(info.value) + "\n"
    report_text = (tmp_path / "report" / "report.json").read_text(encoding="utf-8")
    assert [f["evidence"]["key"] for f in report["findings"]] == keys

    for text in [*load_texts, out, err, report_text, log_file.read_text(encoding="utf-8")]:
        for value in (token, main_pw, sub_pw):
            assert value not in text
