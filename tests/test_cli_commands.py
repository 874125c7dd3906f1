"""The CLI imports only the chosen command's module, so a missing optional package breaks that command alone.

openMind's environment has no fastapi (the server's), yet ``m1-ascend export-hf-code`` and
``openmind-register`` must work there; ``--help`` still lists every command.
"""

from __future__ import annotations

import json
import subprocess
import sys

from m1_ascend.cli import COMMANDS, build_parser

SCRIPT = """
import contextlib, io, json, sys
sys.modules["fastapi"] = None  # as in an environment without it: importing it raises ModuleNotFoundError
from m1_ascend.cli import main
results = {}
for argv in (["--help"], ["serve", "--port", "1"], ["openmind-register", "--openmind-root", "/nonexistent"]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results[argv[0]] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def test_commands_without_their_optional_packages() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    code, listing, _ = results["--help"]
    assert code == 0
    for name in COMMANDS:
        assert name.replace("_", "-") in listing
    assert "(unavailable here: no fastapi)" in listing
    assert results["serve"][0] == 1
    assert results["serve"][2] == ("m1-ascend serve: error: needs the 'fastapi' package, which this Python cannot "
                                   "import; install m1-ascend's requirements here (with -c constraints.txt) or run the "
                                   "command elsewhere\n")
    assert results["openmind-register"][:2] == [1, ""]
    assert "--openmind-root /nonexistent is not a directory" in results["openmind-register"][2]


def test_the_chosen_command_alone_is_registered() -> None:
    def commands(parser) -> list[str]:  # noqa: ANN001 (argparse internals)
        return sorted(next(a for a in parser._actions if a.dest == "command").choices)

    assert commands(build_parser("export-hf-code")) == ["export-hf-code"]
    everything = sorted(name.replace("_", "-") for name in COMMANDS)
    assert commands(build_parser()) == everything
    assert commands(build_parser("no-such-command")) == everything  # argparse then lists them all in its error
