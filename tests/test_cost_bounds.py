"""A cost bound for every input: the whole hostile corpus (tests/hostile/) and the hostile
command lines below, each in its own process under RLIMIT_CPU 2 s and RLIMIT_AS 1 GiB
(tests/corpus_runner.py). Any breach fails: a CPU-limit kill, a wall-clock timeout, an
exit status other than the expected one (1 would be a traceback or a MemoryError), or a
message that is not one located line. How the cost is distributed: bench/corpus.py."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from corpus_runner import AS_BYTES, CPU_S
from test_hostile import CORPUS, HOSTILE, backend_of, expectation

ROOT = Path(__file__).resolve().parent.parent
WRN = str(ROOT / "specs" / "cifar" / "wrn28_10.yaml")


def long_list_patch(tmp: Path) -> str:
    """A spec whose base lists 16,600 named layers (about yamlsrc.MAX_NODES values) and which
    removes each but the last by name (issue 20: 7 s when each removal searched the list)."""
    n = 16_600
    (tmp / "long_base.yaml").write_text(
        "archc: 1\nname: long\ninput: [3, 8, 8]\nlayers:\n" + "".join(f"  - r{k}: relu\n" for k in range(n))
    )
    patch = "".join(f"  r{k}: null\n" for k in range(n - 1))
    tail = f"  pool: {{$after: r{n - 1}, global_avgpool: {{}}}}\n  fc: {{$after: pool, dense: {{units: 0}}}}\n"
    (tmp / "long_patch.yaml").write_text("archc: 1\nextends: long_base.yaml\nname: patched\nlayers:\n" + patch + tail)
    return str(tmp / "long_patch.yaml")


def many_sets(tmp: Path) -> list[str]:
    """3,000 `--set` on a spec of about 45,000 values, half of them on entries of a 5,500-entry
    list found by name (issue 20: past 10 s when each one scanned every value's location)."""
    params, entries = 3000, 5500
    (tmp / "big.yaml").write_text(
        "archc: 1\nname: big\ninput: [3, 8, 8]\n"
        + "params: {" + ", ".join(f"q{k}: 1" for k in range(params)) + "}\nlayers:\n"
        + "".join(f"  - r{k}: {{dropout: {{rate: 0.0}}}}\n" for k in range(entries))
        + "  - pool: global_avgpool\n  - fc: {dense: {units: 1}}\n"
    )  # fmt: skip
    sets = [f"layers.r{entries - 1 - k}.dropout.rate=0.5" if k % 2 else f"params.q{k}=2" for k in range(params)]
    return ["check", str(tmp / "big.yaml"), *(a for s in [*sets, "layers.fc.dense.units=0"] for a in ("--set", s))]


def command_cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    """Hostile options and environments: (argv, expected exit status, text in the message)."""
    fifo = tmp / "fifo.py"
    os.mkfifo(fifo)
    out = str(tmp / "o" / "m.py")
    return [
        (["check", long_list_patch(tmp)], 2, "long_patch.yaml:16605:7: fc: dense units must be >= 1"),
        (many_sets(tmp), 2, "big.yaml:5507:9: fc: dense units must be >= 1"),
        (["build", WRN, "-b", "torch", "-o", str(fifo)], 2, "not a regular file"),
        (["build", WRN, "-b", "torch", "-o", "/dev/stdin"], 2, "not a regular file"),
        (["build", WRN, "-b", "torch", "-o", "/dev/full"], 2, "not a regular file"),
        (["check", WRN, "--set", "params.dropout=round(1, -10**9)"], 2, "digit count"),
        (["check", WRN, "--set", "params.depth=" + "9" * 5000], 2, "number with 5000 characters"),
        (["check", WRN, "--set", "params.widen_factr=10"], 2, "did you mean 'widen_factor'?"),
        (["check", WRN, "--set", "extends=other.yaml"], 2, "extends cannot be set"),
        (["build", WRN, "-b", "torch", "--set", "params.depth=40"], 2, "name its output with -o"),
        (["build", WRN, "-b", "torch", "--set", "params.depth=40", "-o", out], 0, ""),
        (["verify", WRN, "--tolerance", "nan"], 2, "Invalid value for '--tolerance': nan is not a finite number"),
        (["check", str(tmp / "no_such.yaml")], 2, "file not found"),
        (["check", str(fifo)], 2, "not a regular file"),
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bounds")
    cases = [
        {"argv": ["build", name, "-b", backend_of(HOSTILE / name), "-o", str(tmp / "out" / name / "model.py")], "cwd": str(HOSTILE)}
        for name in CORPUS  # each with the backend whose limit it meets (`# backend:`)
    ]
    commands = command_cases(tmp)
    cases += [{"argv": argv, "cwd": str(tmp)} for argv, _, _ in commands]
    (tmp / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "corpus_runner.py"), str(tmp / "cases.json"), str(tmp / "results.json")],
        check=True, timeout=600, env=env,
    )  # fmt: skip
    found = json.loads((tmp / "results.json").read_text())
    return tmp, dict(zip(CORPUS, found)), list(zip(commands, found[len(CORPUS) :]))


def _breach(r: dict) -> str | None:
    if r["timed_out"]:
        return f"wall-clock timeout after {r['wall_s']:.1f} s"
    if r["signal"]:
        return f"killed by {r['signal']} (CPU limit {CPU_S} s or memory)"
    if r["cpu_s"] >= CPU_S:
        return f"{r['cpu_s']:.2f} CPU seconds"
    return None


def test_every_hostile_spec_is_rejected_within_the_bounds(results):
    tmp, corpus, _ = results
    problems = []
    for name, r in corpus.items():
        expect, line = expectation(HOSTILE / name)
        err = r["stderr"]
        if breach := _breach(r):
            problems.append(f"{name}: {breach}")
        elif r["exit"] != 2 or r["stdout"] or err.count("\n") != 1 or expect not in err:
            problems.append(f"{name}: exit {r['exit']}: {err[-300:]!r}")
        elif not (err.startswith(f"archc: error: {name}:{line}:") or err.startswith(f"archc: error: {name}:{line} ")):
            problems.append(f"{name}: not located at line {line}: {err!r}")
        elif (tmp / "out" / name).exists():
            problems.append(f"{name}: wrote output")
    assert not problems, "\n".join(problems)


def test_hostile_command_lines_end_in_one_message_within_the_bounds(results):
    _, _, commands = results
    problems = []
    for (argv, code, text), r in commands:
        shown = " ".join(argv)
        if breach := _breach(r):
            problems.append(f"{shown}: {breach}")
        elif r["exit"] != code or text not in r["stderr"] or "Traceback" in r["stderr"]:
            problems.append(f"{shown}: exit {r['exit']}, expected {code} with {text!r}: {r['stderr'][-300:]!r}")
        elif code == 2 and r["stderr"].count("\n") != 1 and not r["stderr"].startswith("Usage:"):  # click's usage errors
            problems.append(f"{shown}: not one line: {r['stderr']!r}")
    assert not problems, "\n".join(problems)


def test_the_corpus_covers_every_defect_class_of_issue_13():
    names = set(CORPUS)
    for name in [
        "key_typo_deep_in_groups.yaml", "expr_round_digits.yaml", "yaml_huge_flow_list.yaml",
        "type_huge_int_param.yaml", "type_huge_decimal.yaml", "type_huge_hex_input.yaml",
        "shape_pool_stride_zero.yaml", "shape_pool_kernel_zero.yaml", "shape_pool_negative_padding.yaml",
        "extends_symlink_loop.yaml", "block_nesting_depth.yaml", "name_stage_underscore.yaml",
        "type_archc_true.yaml", "type_archc_float.yaml", "extends_library.yaml",
    ]:  # fmt: skip
        assert name in names


def test_archc_fits_the_limits_from_a_cold_start():
    """The limits hold for a whole fresh interpreter too: import archc and check the largest zoo spec."""

    def limits():
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S + 1))
        resource.setrlimit(resource.RLIMIT_AS, (AS_BYTES, AS_BYTES))

    result = subprocess.run(
        [sys.executable, "-m", "archc", "check", str(ROOT / "specs" / "densenet201.yaml")],
        preexec_fn=limits, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "densenet201: output (1000,)" in result.stdout
