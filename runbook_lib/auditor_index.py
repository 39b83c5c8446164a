"""INDEX.md: one page for an auditor, saying where in an archived batch each answer lives.

Rendered from the manifest alone (`render_index`: same manifest, same page; its own entry in the manifest is
left out), written by `archive` into the batch folder and packed second, after the manifest. Plain
Markdown that reads as plain text. Every value that came from a host, a file or a parameter (environment
and workspace names, the operator, what an edit changed) is written as text: the characters Markdown gives
a meaning to (HTML, links, images, code, emphasis) backslash-escaped and control characters dropped, so no
Markdown viewer turns it into a link, an image or HTML.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from runbook_lib import catalog
from runbook_lib.audit import INDEX, MANIFEST, env_dirname
from runbook_lib.signing import NAMESPACE

#: What each step's executed notebook proves when it passed in apply mode.
STEP_PROOFS = {
    catalog.PREFLIGHT: "the legacy environment as found: state serial, lineage and resources, VCS repository "
                       "and branch, variables (sensitive ones counted, never shown), locks, runs in progress, "
                       "the environments reading its state, its teams; and whether it was ready to move",
    catalog.CREATE_ORGANIZATION: "the new organization and its VCS connection exist (created or adopted)",
    catalog.CREATE_WORKSPACES: "the workspace exists with the legacy repository, branch, working directory and "
                               "Terraform version, locked, with the variables carried over and the teams "
                               "granted the legacy access",
    catalog.MIGRATE_STATE: "the legacy state was backed up (sha256) and moved, and the workspace's state was "
                           "read back: same lineage, serial and resources (byte for byte on the api path)",
    catalog.DISABLE_LEGACY_VCS: "the legacy environment's VCS link is gone, with who confirmed it and how",
    catalog.COMMIT_AND_VERIFY: "the backend change was committed and pushed, the workspace's run of that commit "
                               "planned no changes, and no legacy run followed the push",
    catalog.DELETE_LEGACY_ENVIRONMENT: "a final state backup equal to step 3's, who confirmed the deletion, "
                                       "and that the legacy environment is gone",
}
#: Other files an environment's folder may hold, and what each is.
ENV_FILES = [
    ("NN_step.attempt-K.ipynb", "an earlier attempt of a step (and its .html copy), kept as it ran"),
    ("04_legacy_vcs_link.json", "the legacy VCS link as it was before step 4 removed it (to restore it)"),
    ("05_push.json", "the commit step 5 pushed: repository, branch, the commit before and after"),
    ("backups.sha256", "the sha256 of each legacy state backup (`sha256sum -c` in the folder checks them)"),
    ("state/", "the legacy state backups themselves (mode 0600); in the archive only when it was made "
               "with --include-state: they may hold the infrastructure's secrets"),
]
_MARKUP = re.compile(r"([\\`*\[\]<>&|!()~#{}])")
_PLAIN = re.compile(r"^[A-Za-z0-9_.@:/+=,-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def text(value: Any) -> str:
    """A value as Markdown text that stays text: markup characters escaped, control characters dropped."""
    return _MARKUP.sub(r"\\\1", _CONTROL.sub("", "" if value is None else str(value)))


def code(value: str) -> str:
    """A file name as inline code when it is plain (a code span shows backslashes as they are), else as text."""
    return f"`{value}`" if _PLAIN.match(value) else text(value)


def _bullets(rows: list[tuple[str, str]]) -> list[str]:
    return [f"- {code(name) if ' ' not in name else name}: {meaning}." for name, meaning in rows]


def _edits(manifest: Mapping[str, Any]) -> list[str]:
    edits = [e for e in manifest.get("edited_after_run") or [] if isinstance(e, dict)]
    if not edits:
        return []
    lines = ["", "## Evidence changed after the run", "",
             f"{len(edits)} file(s) differ from what the batch recorded when it ran; the operator kept them with "
             "`tfe-runbook archive --accept-edits`. Read them knowing that (manifest.json `edited_after_run` "
             "holds the checksums before and after):", ""]
    for e in edits:
        what = "; ".join(str(w) for w in e.get("what") or []) or "only the checksums are known"
        lines.append(f"- {code(str(e.get('file')))} ({text(e.get('change'))}, accepted by {text(e.get('accepted_by'))} "
                     f"at {text(e.get('accepted_at'))}): {text(what)}")
    return lines


def _environment(environment: str, data: Mapping[str, Any], files: Mapping[str, Any]) -> str:
    """One line: the environment, its workspace and folder, each step's outcome, what is missing."""
    folder = env_dirname(environment)
    workspace = ((data.get("evidence") or {}).get("workspace") or {}).get("name")
    steps = {s: f for s, f in (data.get("steps") or {}).items() if isinstance(f, dict)}
    outcomes = ", ".join(f"{text(s[:2])} {text(f.get('status'))}" for s, f in sorted(steps.items()))
    missing = [s[:2] for s, f in sorted(steps.items()) if not f.get("notebook") or f["notebook"] not in files]
    return (f"- {text(environment)}" + (f" to {text(workspace)}" if workspace else "") + f": {code(folder + '/')}; "
            + (outcomes or "no step ran")
            + (f"; NO executed notebook for step {', '.join(text(m) for m in missing)}" if missing else "")
            + ("; backups.sha256" if f"{folder}/backups.sha256" in files else "") + ".")


def render_index(manifest: Mapping[str, Any], archive_name: str) -> str:
    """The INDEX page of a batch's manifest (pure: the same manifest gives the same page).

    Args:
        manifest: the batch's manifest.json, as `archive` keeps it.
        archive_name: the archive's file name (`<batch>.tar.gz`).
    """
    runbook = manifest.get("runbook") or {}
    files = {k: v for k, v in (manifest.get("files") or {}).items() if k != INDEX}
    mode = str(manifest.get("mode") or (manifest.get("parameters") or {}).get("mode") or "")
    environments = manifest.get("environments") or {}
    batch = text(manifest.get("batch"))
    archive_name = archive_name if _PLAIN.match(archive_name) else "ARCHIVE.tar.gz"  # shown inside code spans
    lines = [
        f"# Audit index of batch {batch}", "",
        f"This archive is the evidence of one migration batch of tfe-runbook: {text(mode) or 'unknown'} mode, "
        f"{len(environments)} environment(s), from {text(manifest.get('started_at'))} to "
        f"{text(manifest.get('finished_at'))}, run by {text(manifest.get('operator'))} on "
        f"{text(manifest.get('host'))} with tfe-runbook {text(runbook.get('version'))} (commit "
        f"{text(runbook.get('git_commit'))}). This page says which file answers which question. It is written "
        f"from {MANIFEST} when the archive is made; {MANIFEST} holds the sha256 and size of every other file.",
    ]
    if mode == "plan":
        lines += ["", "A plan batch changes nothing: each notebook only read and said what apply would do. It "
                      "proves no migration."]
    if manifest.get("refreshed"):
        lines += ["", f"The manifest was rewritten from the ledger after the batch: {text(manifest['refreshed'])}."]
    lines += _edits(manifest)
    lines += ["", "## Is this archive whole, and who vouches for it?", ""]
    lines += _bullets([
        (f"{archive_name}.sha256", f"beside the archive: the archive's sha256 and its file name, "
                                         f"{archive_name} (`sha256sum -c` checks it)"),
        (f"{archive_name}.sha256.sig", f"beside the archive, when signed: the operator's SSH signature of "
                                             f"that .sha256 file (namespace {NAMESPACE}); it binds the archive's "
                                             f"checksum, its file name and so the batch it holds"),
        ("How to verify", f"`tfe-runbook verify {archive_name} --allowed-signers FILE` checks all of it: the "
                          f"checksum, the name, the signature, that every member is a plain file of this batch, and "
                          f"every file against {MANIFEST}. By hand: `sha256sum -c`, then `ssh-keygen -Y verify -f "
                          f"FILE -I SIGNER -n {NAMESPACE} -s {archive_name}.sha256.sig < "
                          f"{archive_name}.sha256`, then compare each file's sha256 with {MANIFEST}"),
    ])
    lines += ["", "## The batch as a whole", ""]
    lines += _bullets([
        (MANIFEST, "who ran the batch, where, when and with which runbook version; the parameters (names of "
                   "variables, never their values); each step's outcome per environment; the facts the summary "
                   "shows; the sha256 and size of every file"),
        ("ledger.sqlite", "every step run (SQLite table step_runs): start, end, outcome, the evidence the step "
                          "recorded, its executed notebook's sha256; operators' confirmations (action confirm) "
                          "and step 5's recoveries (action recover)"),
        ("summary.html", "the page to read first: outcomes, timeline and the evidence per environment (state "
                         "checksums before and after, the verifying run, the unlink, the deletion); a view of "
                         f"{MANIFEST}"),
        *([("_survey/ledger.sqlite", "the ledger of step 0's survey of the whole legacy organization")]
          if "_survey/ledger.sqlite" in files else []),
    ])
    lines += ["", "## Each environment", "",
              "Each environment has a folder `<org>__<env>/` holding one executed notebook per step that ran, "
              "`NN_<step>.ipynb`, and its `.html` copy (the same notebook, readable without Jupyter). A notebook is "
              "the step's own record: its parameters, what it read, what it did and its verdict (PASS, FAIL, "
              "refused).", ""]
    lines += [_environment(str(env), data, files) for env, data in environments.items() if isinstance(data, dict)]
    lines += ["", "## What each step's notebook proves", "",
              "When it passed in apply mode:" if mode != "plan" else
              "In a plan batch a notebook only says what apply would do; in apply mode, when it passed:", ""]
    lines += _bullets([(step, proof) for step, proof in STEP_PROOFS.items()])
    lines += ["", "A failed or refused step's notebook shows what it saw and why it stopped (nothing changed on a "
                  "refusal). Other files an environment's folder may hold:", ""]
    lines += _bullets(ENV_FILES)
    return "\n".join(lines) + "\n"
