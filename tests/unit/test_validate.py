"""Validation at the edge: each bad value is a one-line Refusal with a hint."""

import pytest

from pgmam_remote import validate
from pgmam_remote.errors import Refusal


@pytest.mark.parametrize("name", ["a", "shop", "app_2", "a" * 40])
def test_good_app_names(name):
    assert validate.app_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "1app", "_x", "my-app", "app;rm -rf /", "a" * 41, "app name", "ÿ", "app\n", "../x"]
)
def test_bad_app_names_are_refused(name):
    with pytest.raises(Refusal) as info:
        validate.app_name(name)
    assert info.value.hint


@pytest.mark.parametrize(("value", "port"), [("1024", 1024), (5432, 5432), ("65535", 65535)])
def test_good_ports(value, port):
    assert validate.port(value) == port


@pytest.mark.parametrize("value", ["80", "1023", "65536", "0", "-1", "abc", "", "54 32", None])
def test_bad_ports_are_refused(value):
    with pytest.raises(Refusal):
        validate.port(value)


def test_pg_version():
    assert validate.pg_version(None) is None
    assert validate.pg_version("16") == 16
    for bad in ("x", "7", "160"):
        with pytest.raises(Refusal):
            validate.pg_version(bad)
