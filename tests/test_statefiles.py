"""The files `rollout` edits in the operator's world: atomic writes, dotenv, flags files.

Every edit test compares bytes: the original text with only the value replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rollout_cli.errors import InputError, StateFileError
from rollout_cli.io import dotenv as dotenv_module
from rollout_cli.io import flags as flags_module
from rollout_cli.io.atomic import atomic_write_text, sha256_of
from rollout_cli.io.dotenv import EnvFile
from rollout_cli.io.flags import open_flags, validate_percentage

SRC = Path(__file__).resolve().parents[1] / "src"


# --- atomic writes ----------------------------------------------------------


def test_atomic_write_keeps_existing_mode_and_gives_new_files_0644(tmp_path: Path) -> None:
    secret = tmp_path / ".env"
    secret.write_text("A=1\n")
    secret.chmod(0o600)
    atomic_write_text(secret, "A=2\r\n")
    assert secret.read_bytes() == b"A=2\r\n"  # no newline translation
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    fresh = tmp_path / "flags.json"
    old_umask = os.umask(0o077)
    try:
        atomic_write_text(fresh, "{}\n")
        atomic_write_text(tmp_path / "script.sh", "#!/bin/sh\n", mode=0o750)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "script.sh").stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "flags.json", "script.sh"]  # no temp files left


def test_atomic_write_through_a_symlink_rewrites_the_target(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    atomic_write_text(link, "A=2\n")
    assert link.is_symlink()
    assert real.read_text() == "A=2\n"


def test_atomic_write_into_a_path_whose_parent_is_a_file_names_the_file(tmp_path: Path) -> None:
    # Tests run as root, which ignores chmod; a parent that is a file fails for everyone.
    blocker = tmp_path / "app"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match='cannot write ') as caught:
        atomic_write_text(blocker / ".env", "A=1\n")
    assert str(caught.value) == f"cannot write {blocker / '.env'}: {blocker} is not a folder; fix the path"


def test_atomic_write_into_an_unwritable_folder_says_permission_denied(tmp_path: Path) -> None:
    target_text = "A=1\n"
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        (folder / ".env").write_text(target_text)
        folder.chmod(0o555)
        try:
            with pytest.raises(InputError, match="permission denied") as caught:
                atomic_write_text(folder / ".env", "A=2\n")
            message = str(caught.value)
        finally:
            folder.chmod(0o755)
    else:
        # root ignores permissions, so a forked child drops to user `nobody` and writes
        # into a root-owned folder (fork, not exec: nobody may not be able to run our python).
        # pytest's tmp_path lives under a 0700 folder nobody cannot enter, hence a separate one.
        folder = Path(tempfile.mkdtemp(prefix="rollout-ro-"))
        try:
            folder.chmod(0o755)
            (folder / ".env").write_text(target_text)
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # child
                outcome = "no error"
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    atomic_write_text(folder / ".env", "A=2\n")
                except InputError as exc:
                    outcome = str(exc)
                except BaseException as exc:  # report anything else to the parent, never run pytest on
                    outcome = repr(exc)
                os.write(write_end, outcome.encode())
                os._exit(0)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as pipe:
                message = pipe.read().decode()
            os.waitpid(pid, 0)
        finally:
            unchanged = (folder / ".env").read_text()
            shutil.rmtree(folder)
        assert unchanged == target_text
    assert message == f"cannot write {folder / '.env'}: permission denied; fix its permissions"


def test_sha256_of_is_none_for_missing_file_and_hashes_bytes(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert sha256_of(target) is None
    target.write_bytes(b"A=1\r\n")
    assert sha256_of(target) == hashlib.sha256(b"A=1\r\n").hexdigest()


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rollout_cli.io.atomic import atomic_write_text

    path = Path(sys.argv[1])
    old, new = Path(sys.argv[2]).read_text(), Path(sys.argv[3]).read_text()
    i = 0
    while True:
        atomic_write_text(path, new if i % 2 == 0 else old)
        if i == 0:
            print("writing", flush=True)
        i += 1
    """
)


@pytest.mark.slow(40)
@pytest.mark.timeout(120)
def test_readers_never_see_a_partial_file_while_writer_is_sigkilled(tmp_path: Path) -> None:
    # 256 KiB each, so a torn (non-atomic) write would be visible as a mix or a truncation.
    old = "".join(f"OLD_{i}=old-value-{i}\n" for i in range(12000))
    new = "".join(f"NEW_{i}=new-value-{i}\n" for i in range(12000))
    (tmp_path / "old.txt").write_text(old)
    (tmp_path / "new.txt").write_text(new)
    work = tmp_path / "app"
    work.mkdir()
    target = work / ".env"
    target.write_text(old)

    seen = {"old": 0, "new": 0}
    torn: list[int] = []
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            text = target.read_text()
            if text == old:
                seen["old"] += 1
            elif text == new:
                seen["new"] += 1
            else:
                torn.append(len(text))

    reader = threading.Thread(target=read_forever)
    reader.start()
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    kills = 0
    try:
        while kills < 50:  # bounded by count, not by a clock: a slow machine only takes longer
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER_SCRIPT, str(target), str(tmp_path / "old.txt"), str(tmp_path / "new.txt")],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert writer.stdout is not None
            ready, _, _ = select.select([writer.stdout], [], [], 10)
            assert ready, "writer subprocess did not start"
            time.sleep(rng.uniform(0, 0.03))
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
            writer.stdout.close()
            kills += 1
    finally:
        stop.set()
        reader.join()

    assert kills == 50
    assert torn == [], f"{len(torn)} reads saw a partial file"
    assert seen["old"] > 0 and seen["new"] > 0
    assert target.read_text() in (old, new)
    # A kill between mkstemp and os.replace may leave a temp file; never anything else.
    leftovers = [p.name for p in work.iterdir() if p.name != ".env"]
    assert all(name.startswith("..env.") and name.endswith(".tmp") for name in leftovers), leftovers


# --- dotenv -----------------------------------------------------------------

MESSY_ENV = (
    "# app settings\r\n"
    "\r\n"
    "export OPENROUTER_API_KEY='sk-or-v1-abc'\r\n"
    "LITELLM_ENABLED=false # flip with rollout\r\n"
    'LITELLM_ROLLOUT_PERCENTAGE="10"\r\n'
    "  SPACED = value with spaces   # trailing comment\r\n"
    "EMPTY=\r\n"
    "EMPTY_NOTE= # nothing yet\r\n"
    'ESCAPED="say \\"hi\\"\\n"\r\n'
    'MULTI="line1\r\n'
    'line2"\r\n'
    "URL=http://x/#frag\r\n"
    "    # indented comment\r\n"
    "DUP=first\r\n"
    "DUP=second\r\n"
    "LAST=no-newline"
)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def test_dotenv_round_trips_a_messy_file_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", MESSY_ENV)
    env = EnvFile.load(path)
    assert env.text() == MESSY_ENV
    env.save()
    assert path.read_bytes() == MESSY_ENV.encode()


def test_dotenv_reads_values_as_the_app_sees_them(tmp_path: Path) -> None:
    env = EnvFile.load(write(tmp_path / ".env", MESSY_ENV))
    assert env.get("OPENROUTER_API_KEY") == "sk-or-v1-abc"
    assert env.get("LITELLM_ENABLED") == "false"
    assert env.get("LITELLM_ROLLOUT_PERCENTAGE") == "10"
    assert env.get("SPACED") == "value with spaces"
    assert env.get("EMPTY") == ""
    assert env.get("EMPTY_NOTE") == ""
    assert env.get("ESCAPED") == 'say "hi"\n'
    assert env.get("MULTI") == "line1\nline2"
    assert env.get("URL") == "http://x/#frag"
    assert env.get("DUP") == "second"
    assert env.get("LAST") == "no-newline"
    assert env.get("MISSING") is None
    assert env.keys()[:3] == ["OPENROUTER_API_KEY", "LITELLM_ENABLED", "LITELLM_ROLLOUT_PERCENTAGE"]


def test_dotenv_set_rewrites_only_the_value_part(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", MESSY_ENV)
    env = EnvFile.load(path)
    assert env.set("LITELLM_ENABLED", "true") is True
    assert env.set("LITELLM_ROLLOUT_PERCENTAGE", "50") is True
    assert env.set("OPENROUTER_API_KEY", "sk-or-v1-new") is True
    assert env.set("EMPTY_NOTE", "5") is True
    assert env.set("DUP", "third") is True
    assert env.set("URL", "http://x/#frag") is False
    env.save()
    expected = (
        MESSY_ENV.replace("LITELLM_ENABLED=false #", "LITELLM_ENABLED=true #")
        .replace('PERCENTAGE="10"', 'PERCENTAGE="50"')
        .replace("export OPENROUTER_API_KEY='sk-or-v1-abc'", "export OPENROUTER_API_KEY='sk-or-v1-new'")
        .replace("EMPTY_NOTE= # nothing yet", "EMPTY_NOTE=5 # nothing yet")
        .replace("DUP=second", "DUP=third")
    )
    assert path.read_bytes() == expected.encode()
    assert EnvFile.load(path).get("DUP") == "third"


def test_dotenv_appends_missing_key_after_adding_the_missing_newline(tmp_path: Path) -> None:
    crlf = write(tmp_path / "crlf.env", MESSY_ENV)
    env = EnvFile.load(crlf)
    assert env.set("LITELLM_MASTER_KEY_ENV", "LITELLM_MASTER_KEY") is True
    env.save()
    assert crlf.read_bytes() == (MESSY_ENV + "\r\nLITELLM_MASTER_KEY_ENV=LITELLM_MASTER_KEY\r\n").encode()

    lf = write(tmp_path / "lf.env", "A=1\n")
    env = EnvFile.load(lf)
    env.set("B", "two words")
    env.save()
    assert lf.read_bytes() == b'A=1\nB="two words"\n'
    assert EnvFile.load(lf).get("B") == "two words"

    empty = write(tmp_path / "empty.env", "")
    env = EnvFile.load(empty)
    env.set("A", "1")
    env.save()
    assert empty.read_bytes() == b"A=1\n"


def test_dotenv_quotes_a_value_that_an_unquoted_line_cannot_hold(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", "NOTE=plain # keep\nQ='single'\n")
    env = EnvFile.load(path)
    env.set("NOTE", "a # b")
    env.set("Q", "it's")
    env.save()
    assert path.read_text() == 'NOTE="a # b" # keep\nQ="it\'s"\n'
    reread = EnvFile.load(path)
    assert reread.get("NOTE") == "a # b"
    assert reread.get("Q") == "it's"


def test_dotenv_keeps_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", "\ufeffA=1\nB=2\n")
    env = EnvFile.load(path)
    assert env.get("A") == "1"
    env.set("A", "3")
    env.save()
    assert path.read_bytes() == "\ufeffA=3\nB=2\n".encode()


@pytest.mark.parametrize(
    ("bad_line", "shown"),
    [
        ("this is not an env line", "'this is not ...'"),
        ("=value", "'=...'"),
        ('KEY="unterminated', "'KEY=...' (the \" quote never closes)"),
        ("KEY='a'junk", "'KEY=...' (text after the closing ')"),
        ("BAD KEY=1", "'BAD KEY=...'"),
    ],
)
def test_dotenv_malformed_line_is_an_error_with_its_line_number(tmp_path: Path, bad_line: str, shown: str) -> None:
    path = write(tmp_path / ".env", f"# top\nA=1\n\n{bad_line}\nB=2\n")
    with pytest.raises(StateFileError, match="line 4: cannot parse ") as caught:
        EnvFile.load(path)
    assert str(caught.value) == f"{path} line 4: cannot parse {shown}; fix or remove the line"


def test_dotenv_parse_error_never_prints_a_secret_value(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", 'OPENROUTER_API_KEY="sk-or-v1-secret\n')
    with pytest.raises(StateFileError, match="line 1") as caught:
        EnvFile.load(path)
    assert "line 1" in str(caught.value)
    assert "sk-or" not in str(caught.value)


def test_dotenv_missing_file_points_at_rollout_yaml(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match='env file ') as caught:
        EnvFile.load(tmp_path / "app" / ".env")
    assert str(caught.value) == f"env file {tmp_path / 'app' / '.env'} not found; check app.env_file in rollout.yaml"


def test_dotenv_save_detects_a_value_that_does_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / ".env", "LITELLM_ROLLOUT_PERCENTAGE=10\n")
    env = EnvFile.load(path)
    env.set("LITELLM_ROLLOUT_PERCENTAGE", "0")

    def write_something_else(target: Path, text: str) -> str:
        target.write_text("LITELLM_ROLLOUT_PERCENTAGE=10\n")  # e.g. another process won the race
        return "temp file + rename"

    monkeypatch.setattr(dotenv_module, "write_app_file", write_something_else)
    with pytest.raises(StateFileError, match="LITELLM_ROLLOUT_PERCENTAGE reads back as '10', not '0'"):
        env.save()


def test_dotenv_rejects_an_invalid_key_name(tmp_path: Path) -> None:
    env = EnvFile.load(write(tmp_path / ".env", "A=1\n"))
    with pytest.raises(InputError, match="not a valid variable name"):
        env.set("BAD KEY", "1")


# --- flags: percentage validation and formats ----------------------------------


@pytest.mark.parametrize(("given", "expected"), [(0, 0), (100, 100), ("50", 50), (" 7 ", 7), (25.0, 25)])
def test_validate_percentage_accepts_whole_numbers_0_to_100(given: object, expected: int) -> None:
    assert validate_percentage(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (150, "percentage 150 is outside 0..100"),
        ("150", "percentage 150 is outside 0..100"),
        (-1, "percentage -1 is outside 0..100"),
        ("abc", "percentage 'abc' is not a whole number; use 0..100"),
        (12.5, "percentage 12.5 is not a whole number; use 0..100"),
        (True, "percentage True is not a whole number; use 0..100"),
    ],
)
def test_validate_percentage_rejects_everything_else(given: object, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as caught:
        validate_percentage(given)
    assert str(caught.value) == message


ENV_FLAGS = "# rollout\r\nLITELLM_ENABLED=true\r\nexport LITELLM_ROLLOUT_PERCENTAGE=10 # percent\r\nOTHER='x'\r\n"


def test_env_flags_set_and_get_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", ENV_FLAGS)
    store = open_flags(path, "env", "LITELLM_ROLLOUT_PERCENTAGE")
    assert store.percentage() == 10
    assert store.enabled() is None
    assert store.set_percentage(50) is True
    assert store.set_percentage(50) is False
    store.save()
    assert path.read_bytes() == ENV_FLAGS.replace("PERCENTAGE=10 #", "PERCENTAGE=50 #").encode()
    assert open_flags(path, "env", "LITELLM_ROLLOUT_PERCENTAGE").percentage() == 50


def test_env_flags_missing_variable_reads_as_error_and_is_appended_on_set(tmp_path: Path) -> None:
    path = write(tmp_path / ".env", "LITELLM_ENABLED=true\n")
    store = open_flags(path, "env", "LITELLM_ROLLOUT_PERCENTAGE")
    with pytest.raises(StateFileError, match="has no LITELLM_ROLLOUT_PERCENTAGE"):
        store.percentage()
    assert store.set_percentage(0) is True
    store.save()
    assert path.read_text() == "LITELLM_ENABLED=true\nLITELLM_ROLLOUT_PERCENTAGE=0\n"


JSON_FLAGS = """{
    "app": "router",
    "features": {
        "other": {"rollout": 99, "tags": [1, 2, 3]},
        "litellm": {
            "enabled": true,
            "rollout": 10,
            "note": "rollout: 10"
        }
    },
    "zeta": null
}
"""


@pytest.mark.parametrize(
    "variant",
    ["four-spaces", "tabs", "compact-no-trailing-newline"],
)
def test_json_flags_set_and_get_byte_for_byte(tmp_path: Path, variant: str) -> None:
    text = {
        "four-spaces": JSON_FLAGS,
        "tabs": JSON_FLAGS.replace("    ", "\t"),
        "compact-no-trailing-newline": json.dumps(json.loads(JSON_FLAGS), separators=(",", ":")),
    }[variant]
    path = write(tmp_path / "flags.json", text)
    store = open_flags(path, "json", "features.litellm.rollout")
    assert store.percentage() == 10
    assert store.set_percentage(50) is True
    store.save()
    value_token = '"rollout":10' if variant.startswith("compact") else '"rollout": 10,'
    assert text.count(value_token) == 1
    assert path.read_text() == text.replace(value_token, value_token.replace("10", "50"))
    assert open_flags(path, "json", "features.litellm.rollout").percentage() == 50


def test_json_flags_duplicate_key_edits_the_one_json_reads(tmp_path: Path) -> None:
    text = '{"rollout": 5, "rollout": 10}\n'
    path = write(tmp_path / "flags.json", text)
    store = open_flags(path, "json", "rollout")
    assert store.percentage() == 10
    store.set_percentage(0)
    store.save()
    assert path.read_text() == '{"rollout": 5, "rollout": 0}\n'


def test_json_flags_missing_path_and_non_number_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", JSON_FLAGS)
    with pytest.raises(StateFileError, match=re.escape("has no key 'features.gateway.rollout'")) as caught:
        open_flags(path, "json", "features.gateway.rollout")
    assert str(caught.value) == (
        f"{path} has no key 'features.gateway.rollout' (no 'gateway' under features); check app.flag_key"
    )
    with pytest.raises(StateFileError, match=r"features.litellm.note holds 'rollout: 10', not a whole percentage"):
        open_flags(path, "json", "features.litellm.note").percentage()


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", '{\n  "a": 1\n  "b": 2\n}\n')
    for fmt in ("json", "flagd"):
        with pytest.raises(StateFileError, match="is not valid JSON") as caught:
            open_flags(path, fmt, "a")
        assert str(caught.value) == (
            f"{path} is not valid JSON (line 3, column 3: Expecting ',' delimiter); fix the file"
        )


YAML_FLAGS = """# flags for the router
app: router
features:
  other:
    rollout: 99
  litellm:
    enabled: true   # master switch
    rollout: 10  # percent
    note: "rollout: 10"
list:
  - rollout: 10
"""


def test_yaml_flags_set_and_get_keep_comments_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.yaml", YAML_FLAGS.replace("\n", "\r\n"))
    store = open_flags(path, "yaml", "features.litellm.rollout")
    assert store.percentage() == 10
    assert store.set_percentage(50) is True
    store.save()
    expected = YAML_FLAGS.replace("    rollout: 10  # percent", "    rollout: 50  # percent").replace("\n", "\r\n")
    assert path.read_bytes() == expected.encode()
    assert open_flags(path, "yaml", "features.litellm.rollout").percentage() == 50


def test_yaml_flags_quoted_and_flow_style_values_keep_their_style(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.yaml", "quoted: '10'\nflow: {rollout: 10, other: 1}\n")
    quoted = open_flags(path, "yaml", "quoted")
    quoted.set_percentage(30)
    quoted.save()
    flow = open_flags(path, "yaml", "flow.rollout")
    flow.set_percentage(40)
    flow.save()
    assert path.read_text() == "quoted: '30'\nflow: {rollout: 40, other: 1}\n"


@pytest.mark.parametrize(
    "text",
    [
        "base: &pct 10\nrollout: *pct\n",  # an alias: the edit would also change `base`
        "rollout: !!int 10\n",
        "rollout: |\n  10\n",
    ],
)
def test_yaml_flags_refuse_values_that_cannot_be_edited_safely(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "flags.yaml", text)
    with pytest.raises(StateFileError, match="cannot edit rollout safely"):
        open_flags(path, "yaml", "rollout")
    assert path.read_text() == text


def test_invalid_yaml_and_missing_yaml_path_are_errors(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "features:\n  litellm: [1, 2\n  other: 3\n")
    with pytest.raises(StateFileError, match="is not valid YAML") as caught:
        open_flags(bad, "yaml", "features.litellm")
    assert str(caught.value).startswith(f"{bad} is not valid YAML (line ")
    assert str(caught.value).endswith("); fix the file")

    good = write(tmp_path / "flags.yaml", YAML_FLAGS)
    with pytest.raises(StateFileError, match=r"has no key 'features.litellm.percent' \(no 'percent' under features.litellm\)"):
        open_flags(good, "yaml", "features.litellm.percent")


FLAGD = """{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-ui": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    },
    "litellm-gateway": {
      "state": "ENABLED",
      "variants": {
        "on": true,
        "off": false
      },
      "defaultVariant": "off",
      "targeting": {
        "fractional": [
          {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
          ["on", 10],
          ["off", 90]
        ]
      }
    }
  }
}
"""


def test_flagd_set_and_get_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", FLAGD)
    store = open_flags(path, "flagd", "litellm-gateway")
    assert store.percentage() == 10
    assert store.enabled() is True
    assert store.set_percentage(50) is True
    store.save()
    assert path.read_text() == FLAGD.replace('["on", 10]', '["on", 50]').replace('["off", 90]', '["off", 50]')
    assert open_flags(path, "flagd", "litellm-gateway").percentage() == 50


def test_flagd_keeps_variant_order_and_custom_variant_names(tmp_path: Path) -> None:
    text = (
        '{"flags": {"gw": {"state": "DISABLED", "variants": {"gateway": true, "direct": false},'
        ' "defaultVariant": "direct", "targeting": {"fractional": [{"var": "targetingKey"},'
        ' ["direct", 75], ["gateway", 25]]}}}}'
    )
    path = write(tmp_path / "flags.json", text)
    store = open_flags(path, "flagd", "gw")
    assert store.percentage() == 25
    assert store.enabled() is False
    store.set_percentage(100)
    store.save()
    assert path.read_text() == text.replace('["direct", 75], ["gateway", 25]', '["direct", 0], ["gateway", 100]')


def test_flagd_missing_flag_lists_the_flags(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", FLAGD)
    with pytest.raises(StateFileError, match="flag 'litellm' not found in ") as caught:
        open_flags(path, "flagd", "litellm")
    assert str(caught.value) == (
        f"flag 'litellm' not found in {path} (flags: new-ui, litellm-gateway); check app.flag_key"
    )


def test_flagd_without_fractional_targeting_or_a_bucket_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", FLAGD)
    with pytest.raises(StateFileError, match=r"flag 'new-ui' .* has no top-level targeting.fractional rule"):
        open_flags(path, "flagd", "new-ui")
    one_bucket = write(tmp_path / "one.json", FLAGD.replace('          ["on", 10],\n', ""))
    with pytest.raises(StateFileError, match="fractional must list both 'on' and 'off'"):
        open_flags(one_bucket, "flagd", "litellm-gateway")
    not_flagd = write(tmp_path / "plain.json", JSON_FLAGS)
    with pytest.raises(StateFileError, match='has no "flags" object'):
        open_flags(not_flagd, "flagd", "litellm-gateway")


def test_out_of_range_percentage_is_refused_and_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path / "flags.json", FLAGD)
    store = open_flags(path, "flagd", "litellm-gateway")
    with pytest.raises(InputError, match=r"percentage 150 is outside 0..100"):
        store.set_percentage(150)
    assert store.text() == FLAGD
    assert path.read_text() == FLAGD

    stored = write(tmp_path / "stored.json", '{"rollout": 150}\n')
    with pytest.raises(StateFileError, match=r"rollout holds 150, not a whole percentage 0..100; fix the file"):
        open_flags(stored, "json", "rollout").percentage()


def test_unknown_format_and_missing_flags_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape("unknown flags format 'toml'; use one of: env, json, yaml, flagd (app.flags_format)")) as caught:
        open_flags(tmp_path / "flags.toml", "toml", "x")
    assert str(caught.value) == "unknown flags format 'toml'; use one of: env, json, yaml, flagd (app.flags_format)"
    with pytest.raises(StateFileError, match='flags file ') as caught:
        open_flags(tmp_path / "flags.json", "flagd", "x")
    assert str(caught.value) == f"flags file {tmp_path / 'flags.json'} not found; check app.flags_file in rollout.yaml"


def test_flags_save_detects_a_value_that_does_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "flags.json", FLAGD)
    store = open_flags(path, "flagd", "litellm-gateway")
    store.set_percentage(0)
    monkeypatch.setattr(flags_module, "write_app_file", lambda target, text: "lost")  # write lost
    with pytest.raises(StateFileError, match="litellm-gateway reads back as 10, not 0"):
        store.save()
