"""Signing an archive's checksum with an SSH key, and checking it (`ssh-keygen -Y sign` / `-Y verify`).

A `.sha256` beside an archive proves the archive was not damaged, not who made it: anyone who changes the
archive can recompute it (and the manifest inside). A signature over the `.sha256` file by the operator's
SSH key makes that visible: `tfe-runbook verify --allowed-signers FILE` accepts the archive only when the
signature was made, in this runbook's namespace, by a key listed in FILE (the `allowed_signers` format of
ssh-keygen(1): `<principal> <key type> <public key>` per line).

Files beside `runs/<batch>.tar.gz`:

    <batch>.tar.gz.sha256       "<sha256>  <batch>.tar.gz" (written by `audit.archive`)
    <batch>.tar.gz.sha256.sig   the SSH signature of that file (written by `sign_archive`)

What is signed binds the archive to its batch: the `.sha256` line holds the archive's checksum and its
file name, `<batch>.tar.gz`, the batch id. `check_signature` accepts a signature only for the archive that
line names, and `archive_reader.verify_archive` holds the archive to it (the name on disk, the one batch
folder inside, the manifest's `batch`), so a genuinely signed archive of another batch, renamed, fails.

The namespace binds a signature to its purpose: a signature made for another use (git commits, files)
does not verify here.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runbook_lib.errors import AuditError

#: The ssh-keygen -Y namespace of archive signatures.
NAMESPACE = "tfe-runbook-archive"
SIGNATURE_SUFFIX = ".sig"


def checksum_file(archive_path: str | Path) -> Path:
    """The archive's `.sha256` file (what is signed)."""
    archive_path = Path(archive_path)
    return archive_path.with_name(archive_path.name + ".sha256")


def signature_file(archive_path: str | Path) -> Path:
    """The signature of the archive's `.sha256` file."""
    checksum = checksum_file(archive_path)
    return checksum.with_name(checksum.name + SIGNATURE_SUFFIX)


def _ssh_keygen() -> str:
    binary = shutil.which("ssh-keygen")
    if binary is None:
        raise AuditError("ssh-keygen is not installed; install OpenSSH's client (apt-get install openssh-client) "
                         "to sign or check archive signatures.")
    return binary


def sign_archive(archive_path: str | Path, key: str | Path) -> Path:
    """Sign the archive's `.sha256` with an SSH private key; returns the signature file.

    Args:
        archive_path: the `.tar.gz` written by `archive_writer.archive` (its `.sha256` must be beside it).
        key: the private key file (or its `.pub` when the private key is held by ssh-agent).

    Raises:
        AuditError: no `.sha256`, no such key, or ssh-keygen refused (its message is given; it never
            contains the key).
    """
    checksum = checksum_file(archive_path)
    if not checksum.is_file():
        raise AuditError(f"{checksum} is missing; sign an archive written by `tfe-runbook archive`.")
    if not Path(key).is_file():
        raise AuditError(f"no SSH key at {key}; pass the private key file (ssh-keygen -t ed25519 makes one).")
    signature = signature_file(archive_path)
    signature.unlink(missing_ok=True)  # ssh-keygen will not overwrite an old signature
    proc = subprocess.run([_ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(checksum)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not signature.is_file():
        raise AuditError(f"ssh-keygen could not sign {checksum.name}: {proc.stderr.strip() or proc.returncode}; "
                         f"check the key (a passphrase-protected key needs ssh-agent).")
    return signature


@dataclass(frozen=True)
class SignatureCheck:
    """What `check_signature` found.

    Attributes:
        status: "valid", "invalid", "unsigned" (no signature file) or "unchecked" (signed, but no
            allowed-signers file given).
        principal: who signed (from the allowed-signers file), when valid.
        detail: one sentence for the operator.
    """

    status: str
    principal: str | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def check_signature(archive_path: str | Path, allowed_signers: str | Path | None) -> SignatureCheck:
    """Check the signature of an archive's `.sha256` against an allowed-signers file.

    The `.sha256` itself is compared with the archive by `archive_reader.verify_archive`; a valid signature
    over it then proves who vouched for those bytes, under that file name. A signed `.sha256` that names
    another file than this archive is "invalid" (an archive of another batch, renamed).

    Raises:
        AuditError: the allowed-signers file is missing.
    """
    checksum = checksum_file(archive_path)
    signature = signature_file(archive_path)
    if not signature.is_file():
        return SignatureCheck("unsigned", None, f"unsigned: no {signature.name} beside the archive "
                                                "(`tfe-runbook archive --sign KEY` makes one)")
    if allowed_signers is None:
        return SignatureCheck("unchecked", None, f"signed ({signature.name}), but not checked: pass "
                                                 "--allowed-signers FILE to check who signed it")
    allowed = Path(allowed_signers)
    if not allowed.is_file():
        raise AuditError(f"no allowed-signers file at {allowed}; write one line '<who> <public key>' per signer.")
    if not checksum.is_file():
        return SignatureCheck("invalid", None, f"{checksum.name} is missing, so its signature proves nothing")
    words = checksum.read_text(encoding="utf-8", errors="replace").split()
    named = words[1].lstrip("*") if len(words) > 1 else None
    if named != Path(archive_path).name:
        return SignatureCheck("invalid", None, f"{checksum.name} vouches for {named!r}, not for this archive "
                                               f"{Path(archive_path).name!r}: a signature of another archive (or batch)")
    binary = _ssh_keygen()
    found = subprocess.run([binary, "-Y", "find-principals", "-s", str(signature), "-f", str(allowed)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    principals = [line.strip() for line in found.stdout.splitlines() if line.strip()]
    if found.returncode != 0 or not principals:
        return SignatureCheck("invalid", None, f"the signature was not made by any key in {allowed.name}")
    for principal in principals:
        with open(checksum, "rb") as data:
            proc = subprocess.run([binary, "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                                   "-s", str(signature)], stdin=data, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return SignatureCheck("valid", principal, f"signature valid: {checksum.name} signed by {principal} "
                                                      f"(namespace {NAMESPACE})")
    return SignatureCheck("invalid", None, f"the signature does not match {checksum.name} (changed after signing, "
                                           f"or signed for another namespace than {NAMESPACE})")
