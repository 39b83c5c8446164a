from __future__ import annotations

import pytest

from runbook_lib.errors import ConfigError
from runbook_lib.settings import Settings


def test_token_read_from_named_variable_only():
    s = Settings.from_env({"ATLAS_TOKEN": "abc.atlasv1.secret", "TFE_ADDRESS": "https://tfe.example.com/"})
    assert s.token("legacy") == "abc.atlasv1.secret"
    assert s.address("tfe") == "https://tfe.example.com"
    assert "abc.atlasv1.secret" not in repr(s)


def test_missing_token_names_variable_not_value():
    s = Settings.from_env({}, tfe_token_var="MY_TFE_TOKEN")
    with pytest.raises(ConfigError, match=r"MY_TFE_TOKEN"):
        s.token("tfe")


@pytest.mark.parametrize("bad", ["abc.atlasv1.secretvalue", "", "has space"])
def test_token_var_must_be_a_name(bad):
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        Settings(tfe_token_var=bad)


def test_overrides_ignore_empty_parameters():
    s = Settings.from_env({"ATLAS_ADDRESS": "https://legacy.example.com"}, legacy_address="", ca_bundle=None)
    assert s.address("legacy") == "https://legacy.example.com"


@pytest.mark.parametrize("value", ["", "tfe.example.com", "https://tfe.example.com/api/v2", "ftp://x"])
def test_bad_address_is_a_clear_error(value):
    with pytest.raises(ConfigError):
        Settings(tfe_address=value).address("tfe")


@pytest.mark.parametrize("bad", ["tok\nen-value-123", "token\tvalue", "token\x00value", "tok\x7fen"])
def test_token_with_control_character_is_refused_naming_the_variable(bad):
    s = Settings.from_env({"MY_TFE_TOKEN": bad}, tfe_token_var="MY_TFE_TOKEN")
    with pytest.raises(ConfigError, match=r"MY_TFE_TOKEN contains a control character") as caught:
        s.token("tfe")
    assert bad not in str(caught.value) and bad.strip() not in str(caught.value)


def test_token_var_that_is_a_valid_name_but_a_credential_is_refused():
    github_token = "ghp_" + "a1B2c3D4e5" * 4
    with pytest.raises(ConfigError, match="NAME of an environment variable") as caught:
        Settings(legacy_token_var=github_token)
    assert github_token not in str(caught.value)


@pytest.mark.parametrize("bad", ["abc\u2028def-token-value", "token-value-\U0001F511", "\u201ctoken-value\u201d"])
def test_token_outside_ascii_is_refused_naming_the_variable(bad):
    s = Settings.from_env({"MY_TFE_TOKEN": bad}, tfe_token_var="MY_TFE_TOKEN")
    with pytest.raises(ConfigError, match=r"MY_TFE_TOKEN contains a character that is not ASCII") as caught:
        s.token("tfe")
    assert "token-value" not in str(caught.value)


def test_the_transport_bounds_come_from_their_variables():
    s = Settings.from_env({"TFE_RUNBOOK_REQUEST_DEADLINE": "30", "TFE_RUNBOOK_MAX_ANSWER_MB": "8",
                           "TFE_RUNBOOK_MAX_DOWNLOAD_MB": "0.5", "TFE_RUNBOOK_MAX_PAGES": "20"})
    assert (s.request_deadline, s.max_answer_bytes, s.max_download_bytes, s.max_pages) == (30.0, 8 << 20, 1 << 19, 20)
    defaults = Settings.from_env({})
    assert (defaults.request_deadline, defaults.max_answer_bytes, defaults.max_pages) == (300.0, 64 << 20, 1000)


@pytest.mark.parametrize("name, value", [("TFE_RUNBOOK_REQUEST_DEADLINE", "soon"), ("TFE_RUNBOOK_MAX_PAGES", "2.5"),
                                         ("TFE_RUNBOOK_MAX_ANSWER_MB", "0"), ("TFE_RUNBOOK_MAX_DOWNLOAD_MB", "inf")])
def test_a_bound_that_is_not_a_positive_number_is_refused_naming_it(name, value):
    with pytest.raises(ConfigError, match=f"{name} must be a positive"):
        Settings.from_env({name: value})


def test_an_address_with_user_info_is_refused_without_repeating_it():
    with pytest.raises(ConfigError, match="TFE_ADDRESS carries a credential in its URL") as caught:
        Settings(tfe_address="https://ops:hunter2@tfe.example.com").address("tfe")
    assert "hunter2" not in str(caught.value)
