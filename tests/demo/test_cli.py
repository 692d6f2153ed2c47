"""The demo's command line: a bad argument is one plain line, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery import __main__ as cli
from recovery import demo
from tests.demo.process import run_demo
from tests.redis_server import free_port


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--audit", "/nonexistent/a.jsonl"],
         "--audit: cannot open JSONL audit log '/nonexistent/a.jsonl': No such file"),
        (["--duration", "abc"], "--duration: 'abc' is not a number of seconds"),
        (["--duration", "-1"], "--duration: must be a finite number of seconds > 0, got '-1'"),
        (["--duration", "nan"], "--duration: must be a finite number of seconds > 0"),
        (["--workers", "0"], f"--workers: must be from 1 to {demo.MAX_WORKERS}, got '0'"),
        (["--workers", "two"], "--workers: 'two' is not a whole number"),
        (["--seed", "1.5"], "--seed: '1.5' is not a whole number"),
        (["--processes", "3"], "--processes needs --cluster URL"),
        (["--processes", "0"], "--processes: must be from 1 to 16, got '0'"),
        (["--cluster", "http://x", "--processes", "2"], "--cluster: url must start with redis://"),
        (["--cluster", "redis://127.0.0.1:1/0", "--json"],
         "--json is not available with --cluster"),
        (["--cluster", "redis://127.0.0.1:1/0", "--audit", "a.jsonl"],
         "--audit is not available with --cluster"),
    ],
)
def test_a_bad_argument_is_one_plain_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--cluster" in args:
        pytest.importorskip("redis")  # without it, --cluster says that it needs redis-py
    try:
        code = cli.main(["demo", *args])
    except SystemExit as exit:  # argparse's way out
        code = exit.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("recovery demo: error: ")
    assert says in err


def test_the_audit_path_error_happens_before_anything_starts(tmp_path: Path) -> None:
    done = run_demo("--audit", str(tmp_path))  # a directory
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"recovery demo: error: --audit: cannot open JSONL audit log {str(tmp_path)!r}: "
        "Is a directory\n"
    )


def test_an_unreachable_redis_is_one_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("redis")
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nobody listens there
    assert cli.main(["demo", "--cluster", url]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        f"recovery demo: error: --cluster: cannot reach Redis at {url.replace(':hunter2@', '')}: "
    )
    assert "hunter2" not in err
