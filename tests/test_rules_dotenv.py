"""The dotenv rules (io/dotenv.py): what the app reads from each line, and edits that change only the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_cli.errors import InputError, StateFileError
from rollout_cli.io.dotenv import EnvFile

P = Path("app/.env")


def env(text: str) -> EnvFile:
    return EnvFile(P, text)


# line -> the value the app reads for K
VALUES = [
    ("K=v\n", "v"), ("K=v", "v"), ("K = v \n", "v"), ("export K=v\n", "v"), ("  export\tK=v\n", "v"),
    ("\ufeffK=v\n", "v"), ("K=\n", ""), ("K=   \n", ""), ("K=# not a value\n", ""),
    ("K=v # comment\n", "v"), ("K=v#not-a-comment\n", "v#not-a-comment"), ("K=a b  \n", "a b"),
    ("K='v # x'\n", "v # x"), ("K='a\\nb'\n", "a\\nb"), ('K="a\\nb"\n', "a\nb"), ('K="t\\tq\\"\\\\\\$\\\'"\n', "t\tq\"\\$'"),
    ('K="\\z"\n', "\\z"), ('K="a\\"\n"\n', 'a"\n'), ("K=`v`\n", "v"), ('K="v" # c\n', "v"),
    ('K="line1\nline2"\n', "line1\nline2"), ("K='a\r\nb'\r\n", "a\nb"), ("K='a\rb'\r", "a\nb"),
    ("K=1\nK=2\n", "2"),  # the last one wins
    ("# K=1\nK=2\n", "2"), ("A.b-c=1\nK=v\n", "v"),
    ("A=1\r\nK=v\r\n", "v"), ("A=1\rK=v\r", "v"),
]


@pytest.mark.parametrize(("text", "value"), VALUES)
def test_values_as_the_app_reads_them(text, value):
    assert env(text).get("K") == value


def test_keys_in_file_order_once_and_as_a_dict():
    parsed = env("# c\nB=2\nexport A=1\n\nB=3\nC.d-e=x\n")
    assert parsed.keys() == ["B", "A", "C.d-e"]
    assert parsed.as_dict() == {"B": "3", "A": "1", "C.d-e": "x"}
    assert parsed.get("missing") is None


@pytest.mark.parametrize(("text", "lineno", "shown"), [
    ("A=1\nnot a line\n", 2, "'not a line'"),
    ("A=1\nthis is a long line\n", 2, "'this is a lo...'"),
    ("SECRET='abc\n", 1, "'SECRET=...' (the ' quote never closes)"),
    ('K="a" trailing\n', 1, "'K=...' (text after the closing \")"),
    ("K='a\nb' x\n", 2, "\"b' x\" (text after the closing ')"),
    ("\ufeff1K=v\n", 1, "'1K=...'"),
])
def test_a_line_that_cannot_be_read_is_an_error_that_never_shows_a_value(text, lineno, shown):
    with pytest.raises(StateFileError) as refused:
        env(text)
    assert str(refused.value) == f"{P} line {lineno}: cannot parse {shown}; fix or remove the line"


# text, key, new value -> text after
EDITS = [
    ("K=1 # share\n", "K", "50", "K=50 # share\n"),
    ("export K = 1\n", "K", "50", "export K = 50\n"),
    ("K=\n", "K", "50", "K=50\n"),
    ("K=  # c\n", "K", "5", "K=5  # c\n"),
    ("K='1' # c\n", "K", "50", "K='50' # c\n"),
    ('K="1"\n', "K", 'a "b"\n', 'K="a \\"b\\"\\n"\n'),
    ("K=`1`\n", "K", "x y", "K=`x y`\n"),
    ("K='1'\n", "K", "it's", 'K="it\'s"\n'),  # the value holds the line's quote: double quotes instead
    ("K='1'\n", "K", "a\nb", 'K="a\\nb"\n'),
    ("K=1\n", "K", "a b", 'K="a b"\n'),  # needs quotes now
    ("K=1\n", "K", "a#b", 'K="a#b"\n'),
    ("K=1\n", "K", "tab\there\rcr\\", 'K="tab\\there\\rcr\\\\"\n'),
    ("K=1\r\nA=2\r\n", "K", "3", "K=3\r\nA=2\r\n"),
    ("K=1\nK=2\n", "K", "3", "K=1\nK=3\n"),  # the one the app reads
    ("A=1\n", "K", "5", "A=1\nK=5\n"),  # appended
    ("A=1", "K", "5", "A=1\nK=5\n"),
    ("A=1\r\n", "K", "5", "A=1\r\nK=5\r\n"),  # in the file's own line ending
    ("A=1\r", "K", "5", "A=1\rK=5\r"),
    ("A=1\r\nB=2", "K", "5", "A=1\r\nB=2\r\nK=5\r\n"),
    ("", "K", "a b", 'K="a b"\n'),
]


@pytest.mark.parametrize(("text", "key", "value", "after"), EDITS)
def test_set_changes_only_the_value(text, key, value, after):
    parsed = env(text)
    assert parsed.set(key, value) is True
    assert parsed.text() == after
    assert env(after).get(key) == value


def test_setting_the_same_value_changes_nothing():
    parsed = env("K=1 # c\n")
    assert parsed.set("K", "1") is False and parsed.text() == "K=1 # c\n"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("1K", "v", "cannot set '1K' in app/.env: not a valid variable name; use letters, digits and _"),
    ("K K", "v", "not a valid variable name"),
    ("", "v", "not a valid variable name"),
    ("K", 5, "cannot set K in app/.env: value 5 is not text"),
])
def test_set_refuses_bad_names_and_values(key, value, message):
    with pytest.raises(InputError, match=message):
        env("A=1\n").set(key, value)


def test_save_writes_reads_back_and_keeps_the_rest_byte_for_byte(tmp_path):
    path = tmp_path / ".env"
    original = "# app\r\nexport A='x y' # keep\r\nK=1\r\n\r\nSECRET=\"s\\n\"\r\n"
    path.write_bytes(original.encode())
    loaded = EnvFile.load(path)
    loaded.set("K", "10")
    assert loaded.save()
    assert path.read_bytes() == original.replace("K=1", "K=10").encode()
    assert EnvFile.load(path).get("K") == "10"
    with pytest.raises(StateFileError, match=r"env file .*missing\.env not found; check app\.env_file in rollout\.yaml"):
        EnvFile.load(tmp_path / "missing.env")


def test_save_notices_another_writer(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("K=1\n")
    loaded = EnvFile.load(path)
    loaded.set("K", "2")
    from rollout_cli.io import dotenv

    def racing_write(target: Path, text: str) -> str:
        target.write_text("K=3\n")  # someone else's edit lands between our write and the read-back
        return "rename"

    monkeypatch.setattr(dotenv, "write_app_file", racing_write)
    with pytest.raises(StateFileError, match=r"after writing, K reads back as '3', not '2'; check whether another"):
        loaded.save()
