"""Benchmark (not a test): `tfe-runbook backend show` / `backend rewrite` on a 5 MB `.tf` file.

Target: at most 5 s and at most 20x the file size in memory per command, output byte-exact.

A realistic root module is generated (seeded, so every run sees the same bytes): one `main.tf` of about
`--mb` megabytes holding variables, locals, many resources of several shapes (nested blocks, maps, lists,
interpolations, heredoc user data, comments, strings and heredocs that contain `terraform {` and
`backend "atlas"` text), outputs, a `terraform { required_version ... backend "atlas" { ... } }` block
in the middle of the file and three `data "terraform_remote_state"` sources (atlas backend; two read
`legacy/network`, one `legacy/dns`), plus a small `versions.tf`.

Each command runs in a fresh child interpreter, through `runbook_lib.cli.main` exactly as the
`tfe-runbook` script calls it: `show`, `rewrite --target atlas|remote|cloud` and `rewrite --remote-state` as
previews (they read, plan, verify the parsed-back result and print the diff), and `rewrite --target atlas
--apply`, which also writes the backup and the file. Per command it records:
- `wall_s`: the child's whole wall time (interpreter start and imports included), what an operator waits;
- `command_s`: the time inside `main()` alone; `cpu_s` and `command_cpu_s`: the CPU seconds of both (on a
  shared machine the wall times grow with the load, the CPU seconds hardly);
- `peak_rss_mb`: the child's peak RSS (`VmHWM`), and `added_rss_mb`: that peak minus the RSS after the
  imports (`runbook_lib.cli`, pandas, python-hcl2, lark), reset through `/proc/self/clear_refs`: the memory
  the command itself added, which is what the 20x target bounds;
- the sha256 of its stdout, and for the `--apply` run the check that only the `name` value changed and that
  the backup holds the original bytes.

    .venv/bin/python benchmarks/backend_rewrite.py [--mb 5] [--commands show,atlas,remote,cloud,remote_state]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PROC_STATUS, ROOT, print_table, report_targets, target, wait_for_quiet, write_results

SECONDS_TARGET = 5.0
RATIO_TARGET = 20.0
FROM, TO = "legacy/app", "acme/app-prod"
COMMANDS = {
    "show": ["backend", "show", "{root}"],
    "atlas": ["backend", "rewrite", "{root}", "--from", FROM, "--to", TO, "--target", "atlas"],
    "remote": ["backend", "rewrite", "{root}", "--from", FROM, "--to", TO, "--target", "remote"],
    "cloud": ["backend", "rewrite", "{root}", "--from", FROM, "--to", TO, "--target", "cloud"],
    "remote_state": ["backend", "rewrite", "{root}", "--from", "legacy/network", "--to", "acme/network",
                     "--remote-state"],
    "atlas_apply": ["backend", "rewrite", "{root}", "--from", FROM, "--to", TO, "--target", "atlas", "--apply"],
}


def _resource(rng: random.Random, i: int) -> str:
    """One resource or data block in one of several real-world shapes."""
    shape = i % 6
    name = f"r{i}"
    if shape == 0:
        return (f'# Web tier instance {i}\n'
                f'resource "aws_instance" "{name}" {{\n'
                f'  ami           = "${{var.ami}}"\n'
                f'  instance_type = "{rng.choice(["t2.micro", "m5.large", "c5.xlarge"])}"\n'
                f'  subnet_id     = "${{element(var.subnets, {i % 7})}}"\n'
                f'  count         = {rng.randint(1, 4)}\n\n'
                f'  tags = {{\n'
                f'    Name        = "web-{i}-${{count.index}}"\n'
                f'    Environment = "${{var.environment}}"\n'
                f'    Owner       = "team-{rng.randint(1, 40)}"\n'
                f'  }}\n\n'
                f'  root_block_device {{\n'
                f'    volume_size = {rng.choice([8, 20, 50, 100])}\n'
                f'    volume_type = "gp2"\n'
                f'  }}\n\n'
                f'  user_data = <<EOF\n'
                f'#!/bin/bash\n'
                f'echo "terraform {{ backend \\"atlas\\" {{ name = \\"legacy/app\\" }} }}" > /etc/motd\n'
                f'yum install -y nginx-{i}\n'
                f'EOF\n'
                f'}}\n\n')
    if shape == 1:
        rules = "".join(f'  ingress {{\n    from_port   = {p}\n    to_port     = {p}\n    protocol    = "tcp"\n'
                        f'    cidr_blocks = ["10.{i % 250}.0.0/16", "192.168.{p % 250}.0/24"]\n  }}\n\n'
                        for p in rng.sample([22, 80, 443, 8080, 8443, 5432, 6379], 3))
        return (f'resource "aws_security_group" "{name}" {{\n'
                f'  name        = "sg-{i}"\n'
                f'  description = "Allows traffic; see terraform {{ backend }} docs"  // not a block\n'
                f'  vpc_id      = "${{data.terraform_remote_state.network.vpc_id}}"\n\n'
                f'{rules}'
                f'  egress {{\n    from_port   = 0\n    to_port     = 0\n    protocol    = "-1"\n'
                f'    cidr_blocks = ["0.0.0.0/0"]\n  }}\n}}\n\n')
    if shape == 2:
        return (f'/* Route 53 record {i}\n   terraform {{ backend "atlas" {{}} }} was here once */\n'
                f'resource "aws_route53_record" "{name}" {{\n'
                f'  zone_id = "${{var.zone_id}}"\n'
                f'  name    = "host{i}.${{var.domain}}"\n'
                f'  type    = "A"\n'
                f'  ttl     = "300"\n'
                f'  records = ["${{aws_instance.r{i - 2 if i >= 2 else 0}.*.private_ip}}"]\n'
                f'}}\n\n')
    if shape == 3:
        return (f'resource "aws_iam_policy" "{name}" {{\n'
                f'  name   = "policy-{i}"\n'
                f'  policy = <<-POLICY\n'
                f'    {{\n'
                f'      "Version": "2012-10-17",\n'
                f'      "Statement": [{{"Effect": "Allow", "Action": ["s3:GetObject"],\n'
                f'                     "Resource": "arn:aws:s3:::bucket-{i}/*"}}]\n'
                f'    }}\n'
                f'    POLICY\n'
                f'}}\n\n')
    if shape == 4:
        return (f'data "aws_ami" "{name}" {{\n'
                f'  most_recent = true\n'
                f'  owners      = ["{rng.randint(10**11, 10**12 - 1)}"]\n\n'
                f'  filter {{\n    name   = "name"\n    values = ["ubuntu/images/*-{i}-*"]\n  }}\n}}\n\n')
    return (f'module "svc{i}" {{\n'
            f'  source  = "./modules/service"\n'
            f'  name    = "svc-{i}"\n'
            f'  enabled = {rng.choice(["true", "false"])}\n'
            f'  ports   = [{", ".join(str(rng.randint(1000, 9999)) for _ in range(4))}]\n'
            f'  note    = "literal $${{not_interpolated}} and %%{{not_a_directive}}"\n'
            f'}}\n\n')


TERRAFORM_BLOCK = '''terraform {
  required_version = ">= 0.11.0"

  # The legacy environment; step 3.d changes its name.
  backend "atlas" {
    name    = "legacy/app"
    address = "https://atlas.example.com"
  }
}

'''

REMOTE_STATE = '''data "terraform_remote_state" "{name}" {{
  backend = "atlas"

  config {{
    name = "{env}"
  }}
}}

'''


def make_config(directory: Path, megabytes: float, seed: int = 17) -> Path:
    """Write the root module under `directory`; returns the path of its big `main.tf`."""
    rng = random.Random(seed)
    size = int(megabytes * 1024 * 1024)
    head = ('variable "ami" {}\nvariable "subnets" { type = "list" }\nvariable "environment" { default = "prod" }\n'
            'variable "zone_id" {}\nvariable "domain" {}\n\n'
            'locals {\n  banner = "terraform { backend \\"atlas\\" {} }"\n}\n\n')
    parts = [head, REMOTE_STATE.format(name="network", env="legacy/network")]
    written = sum(len(p) for p in parts)
    i = 0
    placed = {"terraform": False, "dns": False, "network2": False}
    while written < size:
        chunk = _resource(rng, i)
        parts.append(chunk)
        written += len(chunk)
        i += 1
        # The terraform block and the other sources sit mid-file, where a scan cannot stop early.
        for key, at, text in (("terraform", 0.5, TERRAFORM_BLOCK),
                              ("dns", 0.3, REMOTE_STATE.format(name="dns", env="legacy/dns")),
                              ("network2", 0.8, REMOTE_STATE.format(name="network_b", env="legacy/network"))):
            if not placed[key] and written >= size * at:
                parts.append(text)
                written += len(text)
                placed[key] = True
    parts.append('output "web_ips" {\n  value = ["${aws_instance.r0.*.private_ip}"]\n}\n')
    main = directory / "main.tf"
    main.write_bytes("".join(parts).encode())
    (directory / "versions.tf").write_text('provider "aws" {\n  region = "us-east-1"\n}\n')
    return main


CHILD = r'''
import contextlib, io, json, sys, time
import pandas, hcl2, lark  # what any backend command imports: outside the command's own figure
import runbook_lib.cli
from runbook_lib import hcl

''' + PROC_STATUS + r'''
baseline = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM to the current RSS: the peak from here on is the command's
out = io.StringIO()
started, cpu = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(out):
    code = runbook_lib.cli.main(sys.argv[1:])
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = status("VmHWM")
text = out.getvalue()
print("RESULT " + json.dumps({"exit": code, "command_s": round(seconds, 3), "command_cpu_s": round(cpu, 3),"baseline_rss_bytes": baseline,
                              "peak_rss_bytes": peak, "added_rss_bytes": peak - baseline,
                              "stdout_chars": len(text), "stdout_tail": text[-300:],
                              "stdout_sha256": __import__("hashlib").sha256(text.encode()).hexdigest()}))
'''


def run_command(name: str, root: Path) -> dict:
    argv = [part.format(root=root) for part in COMMANDS[name]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = round(wall, 3)
    # CPU seconds of the whole child (user + system): what the command costs when the machine is shared.
    result["cpu_s"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)
    return result


def check_apply(original: bytes, main: Path) -> dict:
    """After `--apply --target atlas`: exactly the name literal differs, and the backup holds the original."""
    new = main.read_bytes()
    backup = main.with_name(main.name + ".bak").read_bytes()
    old_literal, new_literal = f'"{FROM}"'.encode(), f'"{TO}"'.encode()
    anchor = b'backend "atlas" {\n    name    = '
    at = original.index(anchor) + len(anchor)
    expected = original[:at] + new_literal + original[at + len(old_literal):]
    return {"byte_exact": new == expected, "backup_identical": backup == original,
            "size_before": len(original), "size_after": len(new)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--keep", action="store_true", help="keep the generated root (printed)")
    parser.add_argument("--max-wait", type=float, default=180.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--before", type=Path, help="an earlier run's JSON, kept in this run's as `before`")
    args = parser.parse_args(argv)
    names = [n for n in args.commands.split(",") if n]
    quiet = wait_for_quiet(max_wait=args.max_wait)
    before = json.loads(args.before.read_text()) if args.before else None
    work = Path(tempfile.mkdtemp(prefix="backend-rewrite-bench-"))
    try:
        root = work / "root"
        root.mkdir()
        main_tf = make_config(root, args.mb)
        original = main_tf.read_bytes()
        size = len(original)
        lines = original.count(b"\n")
        print(f"generated {main_tf} ({size / 2**20:.2f} MB, {lines} lines)", flush=True)
        runs, rows, targets = {}, [], {}
        for name in names:
            result = run_command(name, root)
            if name == "atlas_apply":
                result["apply_check"] = check_apply(original, main_tf)
                main_tf.write_bytes(original)
                main_tf.with_name("main.tf.bak").unlink()
            runs[name] = result
            ratio = round(result["added_rss_bytes"] / size, 2)
            result["added_rss_ratio"] = ratio
            rows.append((name, result["wall_s"], result["cpu_s"], result["command_s"],
                         round(result["peak_rss_bytes"] / 2**20, 1),
                         round(result["added_rss_bytes"] / 2**20, 1), ratio))
            print(f"{name}: {result['wall_s']:.2f} s, added RSS {result['added_rss_bytes'] / 2**20:.1f} MB", flush=True)
            targets[f"{name}: wall seconds"] = target(result["wall_s"], SECONDS_TARGET, unit=" s")
            targets[f"{name}: CPU seconds"] = target(result["cpu_s"], SECONDS_TARGET, unit=" s")
            targets[f"{name}: added RSS / file size"] = target(ratio, RATIO_TARGET, unit="x")
            if "apply_check" in result:
                targets[f"{name}: byte-exact"] = {"measured": result["apply_check"]["byte_exact"],
                                                  "target": "True", "pass": result["apply_check"]["byte_exact"]}
        results = {"file_bytes": size, "file_mb": round(size / 2**20, 2), "commands": COMMANDS, "runs": runs,
                   "targets": targets, "load": quiet}
        if before:
            results["before"] = {"date": before["machine"]["date"], "load": before["load"],
                                 "runs": {name: {key: run.get(key) for key in ("wall_s", "cpu_s", "command_s", "peak_rss_bytes",
                                                                          "added_rss_bytes", "added_rss_ratio")}
                                          for name, run in before["runs"].items()}}
        path = write_results("backend_rewrite", results)
        print()
        print_table(rows, ("command", "wall_s", "cpu_s", "command_s", "peak_rss_mb", "added_rss_mb", "added/file"))
        report_targets(targets, path)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
