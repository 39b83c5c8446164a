"""A batch's inputs, checked before anything is written: which steps, which parameters, the batch's name.

`--param` values are typed by the notebook that declares them (papermill's inspection), refused when the
batch sets that name itself, when no selected step declares it, or when it looks like a credential.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from runbook_lib import catalog
from runbook_lib.errors import RunbookError

STEPS = catalog.STEPS


def select_steps(spec: str, steps: Sequence[str] = STEPS) -> list[str]:
    """Steps named by a spec like "0-6", "3", "0,1,2" or "2-"; in runbook order.

    Raises:
        RunbookError: a number outside the runbook's steps or a malformed spec.
    """
    chosen: set[int] = set()
    last = len(steps) - 1
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                chosen.update(range(int(lo or 0), int(hi or last) + 1))
            else:
                chosen.add(int(part))
        except ValueError as exc:
            raise RunbookError(f"--steps {spec!r} is not a step list like 0-6 or 3,4.") from exc
    if not chosen or min(chosen) < 0 or max(chosen) > last:
        raise RunbookError(f"--steps {spec!r} must name steps between 0 and {last}.")
    return [steps[i] for i in sorted(chosen)]


def declared_parameters(notebook: str | Path) -> set[str]:
    """The names a notebook's `parameters` cell declares (as papermill reads them)."""
    return set(declared_parameter_types(notebook))


def declared_parameter_types(notebook: str | Path) -> dict[str, type | None]:
    """Each parameter a notebook declares, with its type: papermill's ``inferred_type_name`` (from an
    annotation) when it gives one, else the type of the literal default (``False`` -> bool, ``900`` -> int);
    None when neither says (the value is then passed as the string given)."""
    import ast
    import logging

    import papermill

    # papermill logs a warning per line it cannot parse; the shape test keeps every line parseable.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    types: dict[str, type | None] = {}
    for name, info in papermill.inspect_notebook(str(notebook)).items():
        named = _TYPE_NAMES.get(str(info.get("inferred_type_name") or "").strip())
        if named is None:
            try:
                default = ast.literal_eval(str(info.get("default")))
            except (ValueError, SyntaxError):
                default = None
            named = type(default) if isinstance(default, (bool, int, float, str)) else None
        types[name] = named
    return types


_TYPE_NAMES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
#: Parameters the batch sets itself for every notebook, and what sets them instead of --param.
BATCH_SET_PARAMETERS = {
    "legacy_org": "the mapping file (--mapping; its legacy_org column)",
    "legacy_env": "the mapping file (--mapping; choose environments with --env)",
    "new_org": "the mapping file (--mapping; its new_org column)",
    "workspace": "the mapping file (--mapping; its workspace column)",
    "mode": "--mode plan or --mode apply",
    "audit_root": "--out and --batch (the batch writes under <out>/<batch>)",
    "ledger_path": "--out and --batch (the ledger is <out>/<batch>/ledger.sqlite)",
    "batch_id": "--batch",
    "confirm": "--confirm-file",
    "interactive": "nothing: a batch never waits for a button; confirmations come from --confirm-file",
}
_BATCH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def names_a_variable(parameter: str) -> bool:
    """Whether a parameter carries the NAME of an environment variable (``*_var``, ``sensitive_var_prefix``)."""
    return parameter.endswith("_var") or parameter == "sensitive_var_prefix"


def check_batch_name(name: str) -> str:
    """A batch name, refused when it could be read as a path.

    Raises:
        RunbookError: separators, ``.``/``..``, a leading dot or dash, or other characters.
    """
    if not _BATCH_NAME.match(name or "") or name in (".", "..") or ".." in name:
        raise RunbookError("--batch must be a name (letters, digits, '.', '-', '_'; no '/', no '..', not starting "
                           "with '.' or '-'); the batch is written to <out>/<name>: choose the folder with --out.")
    return name


def coerce_parameter(name: str, value: Any, kind: type | None) -> Any:
    """A ``--param`` value converted to the type its notebook declares.

    Strings from the command line: a bool accepts true/false, 1/0, yes/no, on/off (any case); an int or
    float what Python's int()/float() accept. Values that already have the type pass unchanged.

    Raises:
        RunbookError: the value does not fit the type; the message names the parameter and the type.
    """
    if kind is None or kind is str:
        return value if kind is None or isinstance(value, str) else str(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    spelled = {bool: "True or False (true/false, 1/0, yes/no)", int: "a whole number", float: "a number"}[kind]
    raise RunbookError(f"--param {name} must be {spelled}, as its notebook declares; {text!r} is not.")


def check_parameters(given: Mapping[str, Any], declared: Mapping[str, Mapping[str, type | None]]) -> dict[str, Any]:
    """The extra parameters, checked and typed, before anything is written.

    Args:
        given: the ``--param`` values by name.
        declared: each selected step's declared parameters and their types (`declared_parameter_types`).

    Raises:
        RunbookError: a parameter the batch sets itself, one no selected step declares, a variable name
            that is not one (or is a credential), any credential-shaped value, or a value of the wrong
            type. Messages never repeat a value that looks like a credential.
    """
    from runbook_lib.secrets import credential_shape, scan_bytes, url_credential_problem

    reserved = sorted(set(given) & set(BATCH_SET_PARAMETERS))
    if reserved:
        raise RunbookError("; ".join(f"--param {name} is set by the batch itself: use {BATCH_SET_PARAMETERS[name]}"
                                     for name in reserved) + ".")
    known = set().union(*(set(d) for d in declared.values())) - set(BATCH_SET_PARAMETERS)
    unknown = sorted(set(given) - known)
    if unknown:
        # The closest declared names keep the sentence short; the whole list only when nothing is close.
        close = sorted({m for name in unknown for m in difflib.get_close_matches(name, known, n=2)})
        hint = (f"did you mean {', '.join(close)}?" if close
                else f"the notebooks' parameters are {', '.join(sorted(known))}")
        raise RunbookError(f"unknown notebook parameter(s) {', '.join(unknown)}: no selected step declares them "
                           f"(check the spelling; {hint}).")
    typed: dict[str, Any] = {}
    for name, value in given.items():
        text = str(value)
        shape = credential_shape(text) if names_a_variable(name) else None
        if shape is None and scan_bytes(text.encode(), name):
            shape = "a token or credential"
        if shape:
            raise RunbookError(f"--param {name} looks like {shape}, not a value a notebook may hold (its value "
                               f"is not repeated here): put the secret in an environment variable and pass "
                               f"that variable's NAME{' as ' + name if names_a_variable(name) else ''}.")
        problem = url_credential_problem(f"--param {name}", value)
        if problem:
            raise RunbookError(problem)
        if names_a_variable(name) and not _VAR_NAME.match(text):
            raise RunbookError(f"--param {name} must be the NAME of an environment variable (letters, digits and "
                               f"'_', not starting with a digit), like TFE_TOKEN.")
        kind = next((d[name] for d in declared.values() if name in d), None)
        typed[name] = coerce_parameter(name, value, kind)
    check_step_options(typed, declared)
    return typed


def check_step_options(parameters: Mapping[str, Any], steps: Iterable[str]) -> None:
    """Each selected step's options as its notebook would build them (`catalog.StepOptions.build`), so a value
    outside a step's choices (``migration_path=clii``) is refused before any notebook runs, not when that step
    is reached after the earlier ones ran.

    Raises:
        RunbookError: the step's own sentence (which option, its allowed values), naming the flag.
    """
    from runbook_lib.errors import ConfigError

    for step in steps:
        options = catalog.options_of(step)
        given = {name: value for name, value in parameters.items() if name in options.names()}
        try:
            options.build(step, given)
        except ConfigError as exc:
            raise RunbookError(f"--param refused before any notebook ran: {exc}") from exc
