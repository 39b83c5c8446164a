"""The legacy product's web UI, as small as the migration needs: where an operator acts by hand.

The legacy host documented only a few API endpoints (`legacy_api`); everything else was done in its UI. The
pages here stand for that UI so a rehearsal has somewhere to click:

| page | path | source |
|---|---|---|
| sign in | `/login` | the legacy product signed users in with a password; the sandbox takes the user's API token as the password (a rehearsal has no other secret to hand out) |
| environments | `/terraform/<org>/environments` | - |
| settings | `/terraform/<org>/environments/<env>/settings` | multifactor-authentication.html.md names this path; runs/index.html.md: "You can see the lock status of an environment, and lock/unlock the environment by visiting that environment's settings page"; deleting an environment, with its teams' access shown |
| integrations | `/terraform/<org>/environments/<env>/integrations` | the seed's step 4: "go to the Environment settings page and go to 'Integrations'. In the 'Version Control Integration' section click 'Unlink'"; vcs/github.html.md: existing environments are linked "by setting GitHub details in their **Integrations**" (repository, branch, path to the Terraform files) |
| variables | `/terraform/<org>/environments/<env>/variables` | runs/variables-and-configuration.html.md: Terraform and environment variables on the "Variables" page; sensitive values are never shown |
| runs | `/terraform/<org>/environments/<env>/changes/runs` | vcs/bitbucket.html.md names this path |

(Pages of hashicorp/terraform-website `content/source/docs/enterprise-legacy/` at 98a35d246, 2018-03-27.)

Every action is a form POST carrying the session's CSRF token and answers 303 back to its page with a
message; a read-only member of the organization sees the pages and is refused every action (403). Host text
(names, branches, variable keys and values) is escaped. Sessions live in the server's memory: a restart signs
everyone out.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.wire import Request, Response

COOKIE = "_atlas_session"
_LOCK = threading.Lock()
_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:60em}nav a{margin-right:1em}"
          "section{border:1px solid #ccc;padding:1em;margin:1em 0}table{border-collapse:collapse}"
          "td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}.flash{background:#ffd;padding:.5em}"
          ".danger{color:#fff;background:#c00;border:0;padding:.4em 1em}")


# --- sessions -------------------------------------------------------------------------------------------

def _cookies(req: Request) -> dict[str, str]:
    found = {}
    for part in (req.headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            found[name] = value
    return found


def _sessions(req: Request) -> dict[str, dict[str, str]]:
    """This server's sessions (sid -> user id and CSRF token), kept on the server object: a restart forgets them."""
    with _LOCK:
        if not hasattr(req.app, "ui_sessions"):
            req.app.ui_sessions = {}
        return req.app.ui_sessions


def _session(req: Request) -> dict[str, str] | None:
    sid = _cookies(req).get(COOKIE, "")
    sessions = _sessions(req)
    with _LOCK:
        return sessions.get(sid) if sid else None


def _form(req: Request) -> dict[str, str]:
    try:
        return dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise errors.BadRequestError("the form is not UTF-8") from exc


def _redirect(location: str, *, cookie: str | None = None) -> Response:
    headers = {"Location": location, "Content-Type": "text/html; charset=utf-8"}
    if cookie is not None:
        headers["Set-Cookie"] = cookie
    return Response(303, b"", headers)


def _page(title: str, body: str, *, status: int = 200) -> Response:
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)} - Terraform Enterprise "
           f"(legacy)</title><style>{_STYLE}</style></head><body>{body}</body></html>")
    return Response(status, doc.encode(), {"Content-Type": "text/html; charset=utf-8",
                                           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                                           "Cache-Control": "no-store"})


def _signed_in(req: Request) -> tuple[dict[str, Any], dict[str, str]] | Response:
    """(user, session), or the redirect to the sign-in page."""
    session = _session(req)
    user = req.store.find_user_by_id(session["user_id"]) if session else None
    if session is None or user is None:
        return _redirect("/login?" + urlencode({"next": req.path}))
    return user, session


def login_form(req: Request) -> Response:
    """`GET /login`: the sign-in form."""
    nxt = req.query.get("next") or "/"
    return _page("Sign in", f"<h1>Sign in</h1><form method='post' action='/login'>"
                            f"<input type='hidden' name='next' value='{html.escape(nxt)}'>"
                            f"<p><label>Username <input name='username' autocomplete='username'></label></p>"
                            f"<p><label>Password <input name='password' type='password'></label></p>"
                            f"<p><button type='submit'>Sign in</button></p></form>")


def login(req: Request) -> Response:
    """`POST /login`: username and password (the sandbox user's API token); sets the session cookie."""
    form = _form(req)
    user = req.store.authenticate(form.get("password", "")) if form.get("password") else None
    if user is None or user["username"] != form.get("username"):
        return _page("Sign in", "<h1>Sign in</h1><p class='flash'>Wrong username or password.</p>", status=401)
    sid = secrets.token_urlsafe(24)
    sessions = _sessions(req)
    with _LOCK:
        sessions[sid] = {"user_id": user["id"], "csrf": secrets.token_urlsafe(24)}
    nxt = form.get("next") or "/"
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"  # only a path of this host: no open redirect
    return _redirect(nxt, cookie=f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict")


# --- pages ----------------------------------------------------------------------------------------------

def _env_for(req: Request, user: dict[str, Any], org: str, env: str, *, write: bool = False) -> dict[str, Any]:
    """The environment, or NotFoundError (missing or not visible, as the API) / ForbiddenError (read-only)."""
    return req.store.get_environment(org, env, user, write=write)


def _base(org: str, env: str) -> str:
    return f"/terraform/{quote(org, safe='')}/environments/{quote(env, safe='')}"


def _nav(org: str, env: str) -> str:
    base = _base(org, env)
    return (f"<p><a href='/terraform/{quote(org, safe='')}/environments'>{html.escape(org)}</a> / "
            f"<b>{html.escape(env)}</b></p><nav><a href='{base}/changes/runs'>Runs</a>"
            f"<a href='{base}/variables'>Variables</a><a href='{base}/integrations'>Integrations</a>"
            f"<a href='{base}/settings'>Settings</a></nav>")


def _flash(req: Request) -> str:
    text = req.query.get("flash")
    return f"<p class='flash' role='status'>{html.escape(text)}</p>" if text else ""


def _csrf(session: dict[str, str]) -> str:
    return f"<input type='hidden' name='authenticity_token' value='{html.escape(session['csrf'])}'>"


def _action(path: str, label: str, session: dict[str, str], *, fields: str = "", danger: bool = False) -> str:
    cls = " class='danger'" if danger else ""
    return (f"<form method='post' action='{path}'>{_csrf(session)}{fields}"
            f"<button type='submit'{cls}>{html.escape(label)}</button></form>")


def environments(req: Request, org: str) -> Response:
    """`GET /terraform/<org>/environments`: the organization's environments."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, _ = signed
    req.store.require_legacy_access(org, user)
    items = "".join(f"<li><a href='{_base(org, e['name'])}/settings'>{html.escape(e['name'])}</a></li>"
                    for e in req.store.list_environments(org))
    return _page(org, f"<h1>{html.escape(org)}: environments</h1>{_flash(req)}<ul>{items or '<li>none</li>'}</ul>")


def settings(req: Request, org: str, env: str) -> Response:
    """`GET .../settings`: lock status with Lock/Unlock, the teams' access, and Delete."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, session = signed
    row = _env_for(req, user, org, env)
    base = _base(org, env)
    if row["locked"]:
        lock = (f"<p>Locked by <b>{html.escape(row['locked_by'] or '?')}</b>: {html.escape(row['lock_reason'] or '')}"
                f"</p>{_action(base + '/settings/unlock', 'Unlock', session)}")
    else:
        lock = ("<p>Unlocked.</p>" + _action(base + "/settings/lock", "Lock", session,
                                            fields="<label>Reason <input name='reason'></label> "))
    teams = "".join(f"<tr><td>{html.escape(t['name'])}</td><td>{html.escape(t['access'])}</td>"
                    f"<td>{html.escape(', '.join(t['members']))}</td></tr>"
                    for t in req.store.legacy_environment_teams(row["id"]))
    delete = _action(base + "/settings/delete", "Delete environment", session, danger=True,
                     fields=f"<p>Deleting removes the environment with its state, variables and runs. Type "
                            f"<b>{html.escape(env)}</b> to confirm: <input name='confirm' aria-label='confirm'></p>")
    body = (f"{_nav(org, env)}<h1>Settings</h1>{_flash(req)}"
            f"<section id='lock'><h2>Environment locking</h2>{lock}</section>"
            f"<section id='teams'><h2>Team access</h2><table><tr><th>team</th><th>access</th><th>members</th></tr>"
            f"{teams or '<tr><td colspan=3>no team has access</td></tr>'}</table></section>"
            f"<section id='delete'><h2>Delete environment</h2>{delete}</section>")
    return _page(f"{env} settings", body)


def integrations(req: Request, org: str, env: str) -> Response:
    """`GET .../integrations`: the "Version Control Integration" section, with Unlink (or a Link form)."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, session = signed
    row = _env_for(req, user, org, env)
    base = _base(org, env)
    if row["vcs_repo"]:
        vcs = (f"<p>Linked to <b>{html.escape(row['vcs_repo'])}</b>, branch "
               f"<b>{html.escape(row['vcs_branch'] or '(default)')}</b>, path to the Terraform files "
               f"<b>{html.escape(row['vcs_working_directory'] or '(root)')}</b>.</p>"
               f"{_action(base + '/integrations/unlink', 'Unlink', session)}")
    else:
        vcs = ("<p>Not linked to a repository.</p>" + _action(
            base + "/integrations/link", "Link", session,
            fields="<label>Repository <input name='repo' placeholder='org/repo'></label> "
                   "<label>Branch <input name='branch'></label> "
                   "<label>Path to directory of Terraform files <input name='working_directory'></label> "))
    body = (f"{_nav(org, env)}<h1>Integrations</h1>{_flash(req)}"
            f"<section id='vcs'><h2>Version Control Integration</h2>{vcs}</section>")
    return _page(f"{env} integrations", body)


def variables(req: Request, org: str, env: str) -> Response:
    """`GET .../variables`: Terraform and environment variables; sensitive values hidden."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, _ = signed
    row = _env_for(req, user, org, env)
    tables = []
    for category, title in (("terraform", "Terraform variables"), ("env", "Environment variables")):
        rows = "".join(f"<tr><td>{html.escape(v['key'])}</td><td>"
                       f"{'<i>sensitive</i>' if v['sensitive'] else html.escape(v['value'])}</td>"
                       f"<td>{'yes' if v['hcl'] else ''}</td></tr>"
                       for v in req.store.list_legacy_vars(row["id"]) if v["category"] == category)
        tables.append(f"<section id='{category}-variables'><h2>{title}</h2><table><tr><th>key</th><th>value</th>"
                      f"<th>HCL</th></tr>{rows or '<tr><td colspan=3>none</td></tr>'}</table></section>")
    return _page(f"{env} variables", f"{_nav(org, env)}<h1>Variables</h1>{''.join(tables)}")


def runs(req: Request, org: str, env: str) -> Response:
    """`GET .../changes/runs`: the environment's runs, newest first (a run in progress shows here)."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, _ = signed
    row = _env_for(req, user, org, env)
    items = "".join(f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(r['status'])}</td>"
                    f"<td>{html.escape((r['commit_sha'] or '')[:12])}</td><td>{html.escape(r['message'] or '')}</td>"
                    f"<td>{html.escape(r['created_at'])}</td></tr>" for r in req.store.list_legacy_runs(row["id"]))
    return _page(f"{env} runs", f"{_nav(org, env)}<h1>Runs</h1><table><tr><th>run</th><th>status</th><th>commit</th>"
                                f"<th>message</th><th>created</th></tr>{items}</table>")


def environment(req: Request, org: str, env: str) -> Response:
    """`GET /terraform/<org>/environments/<env>`: to its settings."""
    return _redirect(_base(org, env) + "/settings")


# --- actions --------------------------------------------------------------------------------------------

def _acting(req: Request, org: str, env: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]] | Response:
    """(user, environment, form) for an action; checks the session, the CSRF token and write access."""
    signed = _signed_in(req)
    if isinstance(signed, Response):
        return signed
    user, session = signed
    form = _form(req)
    if not hmac.compare_digest(form.get("authenticity_token", "").encode(), session["csrf"].encode()):
        raise errors.ForbiddenError("the form's authenticity token is missing or wrong; reload the page")
    return user, _env_for(req, user, org, env, write=True), form


def _back(org: str, env: str, page: str, message: str) -> Response:
    return _redirect(f"{_base(org, env)}/{page}?" + urlencode({"flash": message}))


def unlink(req: Request, org: str, env: str) -> Response:
    """`POST .../integrations/unlink`: remove the VCS link (pushes start nothing here any more)."""
    acting = _acting(req, org, env)
    if isinstance(acting, Response):
        return acting
    _, row, _ = acting
    if row["vcs_repo"]:
        req.store.set_environment_vcs(row["id"], None)
    return _back(org, env, "integrations", "Unlinked from version control.")


def link(req: Request, org: str, env: str) -> Response:
    """`POST .../integrations/link`: link a repository (what the runbook's way back asks an operator to do)."""
    acting = _acting(req, org, env)
    if isinstance(acting, Response):
        return acting
    _, row, form = acting
    repo = form.get("repo", "").strip()
    if repo.count("/") != 1 or not all(repo.split("/")):
        return _back(org, env, "integrations", "The repository must look like org/repo.")
    req.store.set_environment_vcs(row["id"], {"repo": repo, "branch": form.get("branch", "").strip() or "master",
                                              "working_directory": form.get("working_directory", "").strip()})
    return _back(org, env, "integrations", f"Linked to {repo}.")


def lock(req: Request, org: str, env: str) -> Response:
    """`POST .../settings/lock`: lock the environment (runs are held while it is locked)."""
    acting = _acting(req, org, env)
    if isinstance(acting, Response):
        return acting
    user, row, form = acting
    if row["locked"]:
        return _back(org, env, "settings", "Already locked.")
    req.store.lock_environment(row, user, form.get("reason", "").strip() or "locked in the UI")
    return _back(org, env, "settings", "Locked.")


def unlock(req: Request, org: str, env: str) -> Response:
    """`POST .../settings/unlock`: unlock (only the user who locked it may)."""
    acting = _acting(req, org, env)
    if isinstance(acting, Response):
        return acting
    user, row, _ = acting
    if row["locked"] and row["locked_by"] != user["username"]:
        return _back(org, env, "settings", f"Locked by {row['locked_by']}: only they can unlock it.")
    req.store.unlock_environment(row, user)
    return _back(org, env, "settings", "Unlocked.")


def delete(req: Request, org: str, env: str) -> Response:
    """`POST .../settings/delete`: delete the environment with its state, variables and runs (name typed)."""
    acting = _acting(req, org, env)
    if isinstance(acting, Response):
        return acting
    _, row, form = acting
    if form.get("confirm", "").strip() != env:
        return _back(org, env, "settings", f"Type {env} to confirm the deletion.")
    req.store.delete_environment(row["id"])
    return _redirect(f"/terraform/{quote(org, safe='')}/environments?" + urlencode({"flash": f"Deleted {env}."}))
