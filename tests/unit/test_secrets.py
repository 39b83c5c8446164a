import pytest

from runbook_lib.secrets import redact, scan_bytes, tokens_in_use

TOKEN = "AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa0987654321"


def test_finds_token_in_use_and_token_shapes():
    data = f"a {TOKEN} b plainsecretvalue c 99999999.atlasv1.qqqqqqqqqqqqqqqqqqqq".encode()
    findings = scan_bytes(data, "f", ["plainsecretvalue", TOKEN])
    assert [f.kind for f in findings] == ["token in use", "token in use", "token-shaped string"]


def test_clean_text_has_no_findings():
    assert scan_bytes(b"serial 4, lineage 1b2c, atlasv1 mentioned", "f", ["plainsecretvalue"]) == []


def test_tokens_in_use_reads_named_variables_only():
    env = {"ATLAS_TOKEN": TOKEN, "TFE_TOKEN": "", "OTHER": "zzzzzzzzzz"}
    assert tokens_in_use(environ=env) == [TOKEN]


def test_redact():
    assert redact(f"x {TOKEN} y plainsecretvalue", ["plainsecretvalue"]) == "x [REDACTED] y [REDACTED]"


def test_credential_shapes_are_found_but_hashes_are_not():
    github = "ghp_" + "Zq8" * 12
    data = f"x {github} y AKIAABCDEFGHIJKLMNOP z -----BEGIN RSA PRIVATE KEY-----".encode()
    kinds = [f.kind for f in scan_bytes(data, "f")]
    assert kinds == ["credential-shaped string"] * 3
    clean = b"sha256 " + b"ab12" * 16 + b" lineage 0b6c3a52-1c1e-4f7e-9d7c-3f1e2d4c5b6a"
    assert scan_bytes(clean, "f") == []


def test_every_variable_a_batch_could_see_is_scanned():
    from runbook_lib.secrets import all_tokens_in_use, token_var_names

    env = {"ATLAS_TOKEN": TOKEN, "GH_PAT": "a-github-token-value", "TFE_RUNBOOK_VAR_db_password": "hunter2hunter2",
           "MYPFX_api_key": "another-sensitive-value", "UNRELATED": "not-a-secret-value"}
    params = {"vcs_token_var": "GH_PAT", "sensitive_var_prefix": "MYPFX_"}
    assert {"GH_PAT", "TFE_RUNBOOK_VAR_db_password", "MYPFX_api_key"} <= set(token_var_names(params, env))
    assert set(all_tokens_in_use(params, env)) == {TOKEN, "a-github-token-value", "hunter2hunter2",
                                                   "another-sensitive-value"}


@pytest.mark.parametrize("value", ["AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa09", "ghp_" + "a1B2" * 9,
                                   "glpat-abcdefghijklmnopqrstu", "0123456789abcdef0123456789abcdef",
                                   "Xk9mQ2pL7vR4tY8wZ3nB"])
def test_credential_shape_recognises_tokens(value):
    from runbook_lib.secrets import credential_shape

    assert credential_shape(value)


@pytest.mark.parametrize("name", ["ATLAS_TOKEN", "TFE_TOKEN", "VCS_OAUTH_TOKEN", "TFE_RUNBOOK_VAR_",
                                  "MY_TFE_TOKEN_FOR_PRODUCTION_2024", "GitlabToken2"])
def test_credential_shape_leaves_variable_names_alone(name):
    from runbook_lib.secrets import credential_shape

    assert credential_shape(name) is None


def test_credential_shapes_inside_base64_are_not_findings():
    blob = b"data:font/woff2;base64,QmFzZTY0ATBB" + b"Qx" * 20 + b"AKIAABCDEFGHIJKLMNOPQ" + b"ghp_" + b"a" * 40
    assert scan_bytes(blob, "f") == []


@pytest.mark.parametrize("value", [
    "https://oauth2:hunter2-pass@gitlab.example.com/acme",   # a password
    "https://ghx-not-a-known-shape@github.com",               # on https the user name is often the token
    "HTTP://user@host.example",
    "ssh://git:pw@github.com/acme",                            # a password on ssh too
    "http://127.0.0.2:8001\\@127.0.0.1:8002/x",                # parsers disagree on where the host is
])
def test_a_url_with_a_credential_is_refused_without_repeating_it(value):
    from runbook_lib.secrets import url_credential_problem

    said = url_credential_problem("--param git_base_url", value)
    assert said and said.startswith("--param git_base_url carries a credential in its URL")
    assert "credential helper" in said and value not in said and "hunter2" not in said and "pw" not in said.split()


@pytest.mark.parametrize("value", ["https://github.com", "ssh://git@github.com/acme", "git@github.com:acme",
                                   "https://h.example/path@version", "https://h.example/?q=a@b", "", "plain text", 7])
def test_urls_without_a_credential_pass(value):
    from runbook_lib.secrets import url_credential_problem

    assert url_credential_problem("x", value) is None
