"""weld from Python: weld a training checkpoint into one servable model.safetensors.

A thin, typed layer over the `weld` command that `pip install weld-ckpt`
puts on PATH. Each function runs the command with `--json` and returns its
JSON object as a dict; progress and notes go to stderr as the command writes
them (a Slurm log or a notebook shows them), and a failure raises WeldError
with weld's own message and exit code.

    import weld
    summary = weld.convert("run/checkpoint-500", "out/ckpt-500")
    weld.verify("out/ckpt-500", against="run/checkpoint-500", check=True)
    weld.inspect("run/checkpoint-500")["tensors"][0]["name"]

Why the command and not a C extension: the command is the tested artefact
(one binary, portable, with its signal handling, open-file limit and
progress), the JSON outputs are its stable interface, and a conversion of
hundreds of GB runs for minutes, so a process start costs nothing. The
binary is found as $WELD_BINARY, else the `weld` installed beside this
package, else `weld` on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

__all__ = ["WeldError", "convert", "finish", "inspect", "verify", "scan", "binary", "version", "__version__"]

PathLike = Union[str, "os.PathLike[str]"]


class WeldError(Exception):
    """weld failed. `message` is weld's error line, `returncode` its exit code
    (1 failure, 2 usage error, 3 --device cuda without a GPU, 130/143 on
    SIGINT/SIGTERM), `command` the argument list run, `stderr` all it wrote
    there (progress and notes included)."""

    def __init__(self, message: str, returncode: int, command: Sequence[str], stderr: str = "") -> None:
        super().__init__(f"{message} (exit {returncode})")
        self.message = message
        self.returncode = returncode
        self.command = list(command)
        self.stderr = stderr


def binary() -> str:
    """The path of the weld command this module runs."""
    env = os.environ.get("WELD_BINARY")
    if env:
        return env
    # pip puts the command in the scripts folder of the scheme it installed to.
    schemes = [None, f"{os.name}_user"]
    for scheme in schemes:
        try:
            scripts = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        candidate = os.path.join(scripts, "weld")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weld")
    if not found:
        raise WeldError("the weld command was not found (pip install weld-ckpt, or set WELD_BINARY)", 127, ["weld"])
    return found


def _run(args: List[str], *, report_on_failure: bool = False) -> Dict[str, Any]:
    """Run weld ARGS --json: its object, stderr passed through as it comes.

    With REPORT_ON_FAILURE (verify, scan), exit 1 with a JSON object is a
    result (a check failed, a file is unsafe), not an error."""
    cmd = [binary(), *args, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_lines: List[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    # stderr is read line by line as weld writes it, so progress shows live;
    # stdout is only the final JSON, small, read after (no pipe can fill up
    # while the other is waited on: stdout is written once, at the end).
    try:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            err_lines.append(line)
            sys.stderr.write(line)
            sys.stderr.flush()
        out = proc.stdout.read().decode("utf-8", "replace")
        rc = proc.wait()
    except BaseException:
        # Ctrl-C (or any error here) stops weld the way SIGINT stops the
        # command, which leaves the old output or none, never a half one;
        # then the caller sees the interruption.
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    stderr = "".join(err_lines)
    result: Optional[Dict[str, Any]] = None
    if out.strip():
        try:
            result = json.loads(out)
        except ValueError:
            result = None
    if rc == 0 and result is not None:
        return result
    if rc == 1 and report_on_failure and result is not None:
        return result
    # weld's last "weld: error: ..." line; a usage error is "weld: CMD: ...".
    errors = [ln.strip() for ln in err_lines if ln.startswith("weld: error: ")]
    others = [ln.strip() for ln in err_lines if ln.startswith("weld: ")]
    if errors:
        message = errors[-1][len("weld: error: "):]
    elif others:
        message = others[-1][len("weld: "):]
    else:
        message = f"weld exited with status {rc}"
    raise WeldError(message, rc, cmd, stderr)


def _allow(allow_globals: Iterable[str]) -> List[str]:
    args: List[str] = []
    for g in allow_globals:
        args += ["--allow-global", g]
    return args


def convert(
    input: PathLike,
    output: PathLike,
    dtype: str = "bfloat16",
    device: str = "auto",
    *,
    type: str = "auto",
    pytorch_bin: bool = False,
    threads: Optional[int] = None,
    chunk_bytes: Optional[int] = None,
    cross_check: str = "warn",
    force: bool = False,
    allow_globals: Iterable[str] = (),
    side_files: Optional[PathLike] = None,
    max_shard_size: Optional[Union[int, str]] = None,
    parts: Optional[int] = None,
    part: Optional[int] = None,
    dry_run: bool = False,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Weld the checkpoint INPUT into the folder OUTPUT (`weld convert`).

    dtype: "bfloat16", "float16", "float32" or "keep"; device: "auto", "cpu"
    or "cuda"; type: "auto", "hf", "zero" or "dcp"; pytorch_bin: write
    pytorch_model.bin instead of model.safetensors; cross_check: "warn",
    "error" or "off"; force: replace an existing OUTPUT; side_files: the
    folder to take config.json and tokenizer files from (an HF Trainer FSDP
    checkpoint holds none); max_shard_size: shard as transformers'
    save_pretrained(max_shard_size=...) does ("5GB", or an int of bytes);
    parts, part: this process runs part PART (from 0) of a conversion split
    across PARTS processes (Slurm tasks); the last one to finish publishes
    OUTPUT (default: SLURM_NTASKS/SLURM_PROCID when over one task; parts=1
    runs everything here); dry_run: plan only;
    quiet: no progress on stderr. Returns the summary (`weld convert --json`):
    tensors, bytes_read, bytes_written, crc32, backend, seconds, ...
    Raises WeldError."""
    args = ["convert", "--input", os.fspath(input), "--output", os.fspath(output), "--dtype", dtype,
            "--device", device, "--type", type, "--cross-check", cross_check]
    if pytorch_bin:
        args.append("--pytorch-bin")
    if threads is not None:
        args += ["--threads", str(int(threads))]
    if chunk_bytes is not None:
        args += ["--chunk-bytes", str(int(chunk_bytes))]
    if force:
        args.append("--force")
    if side_files is not None:
        args += ["--side-files", os.fspath(side_files)]
    if max_shard_size is not None:
        args += ["--max-shard-size", str(max_shard_size)]
    if parts is not None:
        args += ["--parts", str(int(parts))]
    if part is not None:
        args += ["--part", str(int(part))]
    if dry_run:
        args.append("--dry-run")
    if quiet:
        args.append("--quiet")
    return _run(args + _allow(allow_globals))


def finish(output: PathLike, *, device: str = "auto", quiet: bool = False) -> Dict[str, Any]:
    """Publish the multi-part conversion into OUTPUT whose parts are all
    recorded (`weld convert --finish`): what its last part could not do.
    Raises WeldError naming the parts still missing."""
    args = ["convert", "--finish", "--output", os.fspath(output), "--device", device]
    if quiet:
        args.append("--quiet")
    return _run(args)


def inspect(path: PathLike, *, allow_globals: Iterable[str] = ()) -> Dict[str, Any]:
    """What the checkpoint file or folder PATH holds (`weld inspect --json`):
    format, files and each tensor's name, dtype, shape and file. Reads headers
    and pickles only. Raises WeldError."""
    return _run(["inspect", os.fspath(path)] + _allow(allow_globals))


def verify(path: PathLike, against: Optional[PathLike] = None, *, device: str = "auto",
           check: bool = False) -> Dict[str, Any]:
    """Check the output folder PATH (`weld verify --json`), and with AGAINST
    compare it with the checkpoint it came from. Returns the report: "ok",
    "checks" (name, level PASS/WARN/FAIL, detail), "passed", "failed", ...
    A failed check is a report with ok False, or a WeldError with
    check=True; a folder that cannot be read always raises WeldError."""
    args = ["verify", os.fspath(path), "--device", device]
    if against is not None:
        args += ["--against", os.fspath(against)]
    report = _run(args, report_on_failure=True)
    if check and not report.get("ok", False):
        failed = [c for c in report.get("checks", []) if c.get("level") == "FAIL"]
        first = f"{failed[0]['name']}: {failed[0]['detail']}" if failed else "verification failed"
        raise WeldError(f"{os.fspath(path)}: {first}", 1, ["weld", *args, "--json"])
    return report


def scan(*paths: PathLike, check: bool = False) -> Dict[str, Any]:
    """The globals the pickles in PATHS reference, and a verdict per file
    (`weld scan --json`): "all_safe", "files" (path, verdict safe/unsafe/
    malformed, globals). With check=True an unsafe or malformed file raises
    WeldError. Nothing is loaded or called."""
    if not paths:
        raise ValueError("scan needs at least one path")
    report = _run(["scan", *[os.fspath(p) for p in paths]], report_on_failure=True)
    if check and not report.get("all_safe", False):
        bad = [f["path"] for f in report.get("files", []) if f.get("verdict") != "safe"]
        raise WeldError(f"not safe: {', '.join(bad)}", 1, ["weld", "scan", *map(os.fspath, paths), "--json"])
    return report


def version() -> str:
    """The weld command's version line (`weld --version`): version and CUDA backend."""
    return subprocess.run([binary(), "--version"], check=True, capture_output=True, text=True).stdout.strip()


try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("weld-ckpt")
except Exception:  # running from a source tree
    __version__ = "0.0.0+unknown"
