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
