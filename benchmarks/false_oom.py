"""Benchmark (issue 19): no OOM retry of a failure that was not the OOM killer's, while the OOM killer works.

Every case runs as `fi_run --retries 3 --log LOG -- COMMAND` inside a memory cgroup made for the run (root;
cgroup v1 below this process's own memory cgroup, v2 at the top). Meanwhile a "hog" loop in the same cgroup
starts, one after another, Python processes that allocate past the cgroup's limit (oom_score_adj 1000), so
that the kernel OOM-kills one every fraction of a second and the cgroup's OOM-kill count moves while every
case runs: the one condition under which fi_run retries a killed command. The cases:

- real compile and link errors from this machine's compilers (gcc, g++, ld through gcc, rustc, javac where
  present): at least 50, each a different mistake;
- look-alikes: real compile errors whose message quotes a killed-process line (`#error`, `compile_error!`);
- --timeout 0.5 on a command that ignores SIGTERM (fi_run ends it with SIGKILL after the grace);
- an interrupt: SIGINT to the step's process group (as ninja sends on Ctrl-C), and SIGTERM to fi_run;
- a person's SIGKILL of the command: once with the hog running (the cgroup's count moves: only the kernel's
  log, /dev/kmsg, says that the hog was the victim; where it cannot be read this case is retried, a limit
  docs/retries.md names), once without (the control).

Reported per case: exit status, attempts (from the step's --log record), whether any attempt was marked
`oom`, and how many OOM kills the cgroup counted while the case ran (a case with none proves nothing; the
table says so). A false retry is any case with more than one attempt or an `oom` attempt.

Usage: sudo python benchmarks/false_oom.py [--limit 192] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from common import prepare
from memory_floor import make_cgroup, peak_and_kills, remove_cgroup

HERE = os.path.dirname(os.path.abspath(__file__))
FI_RUN = [sys.executable, os.path.join(os.path.dirname(HERE), "fi_run", "__main__.py")]

HOG = """
import os, sys
with open("/proc/self/oom_score_adj", "w") as f:
    f.write("1000")
data = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(data), 4096):
    data[i] = 1
"""

# name -> source; each is compiled with `gcc -c` (C), and must fail.
C_ERRORS = {
    "missing semicolon": "int main(void) { int x = 1 return x; }",
    "undeclared identifier": "int main(void) { return y; }",
    "missing header": "#include <no_such_header_fi_run.h>\nint main(void) { return 0; }",
    "redefinition": "int f(void) { return 1; }\nint f(void) { return 2; }",
    "too few arguments": "int f(int a, int b) { return a + b; }\nint main(void) { return f(1); }",
    "unknown type name": "foo_t x;",
    "#error": "#error this configuration is not supported",
    "invalid operands": "struct s { int a; };\nint main(void) { struct s x = {1}; return x + 1; }",
    "break outside loop": "int main(void) { break; return 0; }",
    "conflicting types": "int f(int);\ndouble f(int);",
    "void value not ignored": "void f(void) {}\nint main(void) { int x = f(); return x; }",
    "static assertion": '_Static_assert(sizeof(int) == 3, "int is not 3 bytes");',
    "negative array size": "int a[-1];",
    "undefined label": "int main(void) { goto nowhere; }",
    "lvalue required": "int main(void) { 1 = 2; return 0; }",
    "unterminated comment": "int main(void) { return 0; } /* never closed",
    "incompatible pointer (-Werror)": "int main(void) { int *p = 1.5; return *p; }",
    "implicit declaration (-Werror)": "int main(void) { return undeclared_function(); }",
    "unterminated string": 'const char *s = "never closed;\n',
    "duplicate case": "int f(int x) { switch (x) { case 1: case 1: return 0; } return 1; }",
}
CXX_ERRORS = {
    "template instantiation": "template <class T> T f(T t) { return t.missing(); }\nint x = f(1);",
    "no matching function": "void f(int, int);\nvoid g() { f(1); }",
    "no such member": "struct A {};\nint g(A a) { return a.b; }",
    "abstract class": "struct A { virtual void f() = 0; };\nA a;",
    "private member": "class A { int x; };\nint g(A a) { return a.x; }",
    "static_assert": 'static_assert(sizeof(char) == 2, "char is not 2 bytes");',
    "constexpr not constant": "int n = 3;\nconstexpr int m = n;",
    "ambiguous overload": "void f(long);\nvoid f(short);\nvoid g() { f(1); }",
    "deleted function": "struct A { A(const A&) = delete; A() = default; };\nA a; A b(a);",
    "concept not satisfied": "#include <concepts>\ntemplate <std::integral T> T f(T t) { return t; }\n"
    "double x = f(1.5);",
    "narrowing in braces": "int x{1.5};",
    "missing template arguments": "#include <vector>\nstd::vector v;",
}
LINK_ERRORS = {
    "undefined reference": ("c", "int f(void);\nint main(void) { return f(); }", []),
    "multiple definition": ("c", "int f(void) { return 0; }\nint main(void) { return f(); }", ["twice"]),
    "no main": ("c", "int f(void) { return 0; }", []),
    "missing library": ("c", "int main(void) { return 0; }", ["-lno_such_library_fi_run"]),
    "undefined reference (C++)": ("cc", "int f();\nint main() { return f(); }", []),
    "undefined vtable": ("cc", "struct A { virtual void f(); };\nint main() { A a; return 0; }", []),
    "not an object file": ("c", "int main(void) { return 0; }", ["garbage"]),
    "missing input file": ("c", "int main(void) { return 0; }", ["/nonexistent/fi_run.o"]),
    "--no-undefined shared": (
        "c",
        "int f(void);\nint g(void) { return f(); }",
        ["-shared", "-Wl,--no-undefined"],
    ),
    "bad linker script": ("c", "int main(void) { return 0; }", ["script"]),
    "unknown linker option": ("c", "int main(void) { return 0; }", ["-Wl,--no-such-option-fi-run"]),
}
RUST_ERRORS = {
    "mismatched types": 'fn main() { let x: i32 = "s"; }',
    "borrow of moved value": 'fn main() { let v = vec![1]; let w = v; println!("{:?}", v); let _ = w; }',
    "unresolved import": "use no_such_crate::thing;\nfn main() {}",
    "missing lifetime": "fn f(a: &str, b: &str) -> &str { a }\nfn main() {}",
    "unused variable (-D warnings)": "fn main() { let x = 1; }",
    "cannot find function": "fn main() { no_such_function(); }",
    "trait not implemented": 'struct S;\nfn main() { println!("{}", S); }',
    "syntax error": "fn main() { let = ; }",
}
JAVA_ERRORS = {
    "cannot find symbol": "class A { void f() { g(); } }",
    "incompatible types": 'class A { int x = "s"; }',
    "missing return": "class A { int f() { } }",
    "unreported exception": "class A { void f() { throw new Exception(); } }",
    "class name mismatch": "public class NotA {}",
}
# Real compile errors whose message quotes a killed-process line: fi_run must not take them for a kill.
LOOK_ALIKES = {
    "gcc #error quoting cc1plus": ("c", "#error g++: fatal error: Killed signal terminated program cc1plus"),
    "gcc #error quoting collect2": (
        "c",
        "#error collect2: fatal error: ld terminated with signal 9 [Killed]",
    ),
    "gcc undeclared 'Killed'": ("c", "int main(void) { return Killed; }"),
    "rustc compile_error! quoting cargo": (
        "rs",
        'compile_error!("process didn\'t exit successfully: `rustc x.rs` (signal: 9, SIGKILL: kill)");\n'
        "fn main() {}",
    ),
    "rustc compile_error! quoting clang": (
        "rs",
        'compile_error!("clang: error: unable to execute command: Killed");\nfn main() {}',
    ),
}


@dataclass
class Case:
    kind: str
    name: str
    command: list[str]
    action: str = ""  # "", "sigint-group", "sigterm", "sigkill-command"
    hog: bool = True


@dataclass
class Result:
    case: Case
    status: int
    attempts: int
    oom: bool
    kills: int
    log_missing: bool = False
    families: list[str] = field(default_factory=list)


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def cases(work: str) -> list[Case]:
    found: list[Case] = []
    gcc, gxx = shutil.which("gcc"), shutil.which("g++")
    if gcc:
        for i, (name, source) in enumerate(C_ERRORS.items()):
            src = write(work, f"c{i}.c", source)
            found.append(
                Case("C (gcc)", name, [gcc, "-Werror", "-c", src, "-o", os.path.join(work, f"c{i}.o")])
            )
        found.append(Case("C (gcc)", "no such source file", [gcc, "-c", os.path.join(work, "missing.c")]))
        found.append(Case("C (gcc)", "unknown option", [gcc, "-fno-such-option-fi-run", "-c", src]))
    if gxx:
        for i, (name, source) in enumerate(CXX_ERRORS.items()):
            src = write(work, f"x{i}.cc", source)
            std = ["-std=c++20"] if "concept" in name else []
            found.append(Case("C++ (g++)", name, [gxx, *std, "-c", src, "-o", os.path.join(work, f"x{i}.o")]))
    if gcc and gxx:
        for i, (name, (language, source, given)) in enumerate(LINK_ERRORS.items()):
            src = write(work, f"l{i}.{language}", source)
            driver = gxx if language == "cc" else gcc
            objects, extra = [src], given
            if given == ["twice"]:
                other = write(work, f"l{i}b.c", "int f(void) { return 1; }")
                objects, extra = [src, other], []
            elif given == ["garbage"]:
                extra = [write(work, f"l{i}.o", "this is not an object file")]
            elif given == ["script"]:
                extra = ["-T", write(work, f"l{i}.ld", "SECTIONS { .text : { *(.text) ")]
            found.append(
                Case("link", name, [driver, *objects, *extra, "-o", os.path.join(work, f"l{i}.out")])
            )
    rustc = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")
    if os.path.exists(rustc):
        for i, (name, source) in enumerate(RUST_ERRORS.items()):
            src = write(work, f"r{i}.rs", source)
            deny = ["-D", "warnings"] if "warnings" in name else []
            found.append(Case("Rust (rustc)", name, [rustc, *deny, "--out-dir", work, src]))
    javac = shutil.which("javac")
    if javac:
        for i, (name, source) in enumerate(JAVA_ERRORS.items()):
            directory = os.path.join(work, f"j{i}")
            os.mkdir(directory)
            src = write(directory, "A.java", source)
            found.append(Case("Java (javac)", name, [javac, "-d", directory, src]))
    for i, (name, (language, source)) in enumerate(LOOK_ALIKES.items()):
        src = write(work, f"a{i}.{language}", source)
        if language == "c" and gcc:
            found.append(Case("look-alike", name, [gcc, "-c", src, "-o", os.path.join(work, f"a{i}.o")]))
        elif language == "rs" and os.path.exists(rustc):
            found.append(Case("look-alike", name, [rustc, "--out-dir", work, src]))
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    found += [
        Case(
            "timeout",
            "--timeout 0.5, SIGTERM ignored (SIGKILL)",
            ["--timeout", "0.5", "--", sys.executable, "-c", ignore_term],
        ),
        Case("timeout", "--timeout 0.5, ends at SIGTERM", ["--timeout", "0.5", "--", *sleeper]),
        Case("interrupt", "SIGINT to the process group (ninja's Ctrl-C)", sleeper, action="sigint-group"),
        Case("interrupt", "SIGTERM to fi_run", sleeper, action="sigterm"),
        Case(
            "person",
            "SIGKILL of the command, no OOM kill meanwhile",
            sleeper,
            action="sigkill-command",
            hog=False,
        ),
        Case(
            "person", "SIGKILL of the command while another is OOM-killed", sleeper, action="sigkill-command"
        ),
    ]
    return found


class Hog:
    """Processes in the cgroup that outgrow it, one after another, until stopped."""

    def __init__(self, cgroup: str, size: int, env: dict[str, str]) -> None:
        self.cgroup, self.size, self.env = cgroup, size, env
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            subprocess.run(
                inside(self.cgroup, [sys.executable, "-c", HOG, str(self.size)]),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )

    def __enter__(self) -> Hog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def inside(cgroup: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the cgroup: a shell moves itself in, then becomes the command (same pid). Not
    preexec_fn: the hog's thread runs meanwhile, and forking with a thread running makes that unsafe."""
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, *argv]


def command_pid(fi_run_pid: int, patience: int = 500) -> int | None:
    """The command fi_run started (its only child), once it has one (``patience`` looks, 10 ms apart)."""
    for _ in range(max(patience, 1)):
        try:
            with open(f"/proc/{fi_run_pid}/task/{fi_run_pid}/children") as f:
                children = f.read().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        time.sleep(0.01)
    return None


def run_case(case: Case, work: str, cgroup: str, version: int, env: dict[str, str], hog_size: int) -> Result:
    log = os.path.join(work, "step.log")
    if os.path.exists(log):
        os.unlink(log)
    options = case.command[: case.command.index("--")] if "--" in case.command else []
    command = case.command[case.command.index("--") + 1 :] if "--" in case.command else case.command
    argv = [*FI_RUN, "--retries", "3", "--log", log, *options, "--", *command]
    _, before = peak_and_kills(cgroup, version)
    hog = Hog(cgroup, hog_size, env) if case.hog else None
    if hog is not None:
        hog.__enter__()
        time.sleep(0.3)  # the first kill before the step starts
    try:
        child = subprocess.Popen(
            inside(cgroup, argv),
            cwd=work,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if case.action:
            time.sleep(0.8)
            if case.action == "sigint-group":
                os.killpg(child.pid, signal.SIGINT)
            elif case.action == "sigterm":
                child.send_signal(signal.SIGTERM)
            elif case.action == "sigkill-command":
                # Kill each attempt's command (a retry of a killed sleeper would run 30 s) until fi_run ends.
                killed: set[int] = set()
                while child.poll() is None:
                    pid = command_pid(child.pid, patience=1)
                    if pid is not None and pid not in killed:
                        killed.add(pid)
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.05)
        status = child.wait(timeout=120)
    finally:
        if hog is not None:
            time.sleep(0.2)
            hog.__exit__()
    _, after = peak_and_kills(cgroup, version)
    try:
        with open(log) as f:
            record = json.loads(f.read().splitlines()[-1])
        attempts = record.get("attempts", [])
        families = [a.get("family") or "" for a in attempts]
        return Result(case, status, len(attempts), "oom" in families, after - before, families=families)
    except (OSError, IndexError, ValueError):
        return Result(case, status, 0, False, after - before, log_missing=True)


def kmsg_readable() -> bool:
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=192, help="the cgroup's limit, MiB")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("false_oom.py: making a memory cgroup needs root")
    env = prepare()
    work = tempfile.mkdtemp(prefix="fi_run-false-oom-")
    cgroup, version = make_cgroup(args.limit << 20)
    results: list[Result] = []
    try:
        all_cases = cases(work)
        for case in all_cases:
            results.append(run_case(case, work, cgroup, version, env, args.limit * 2))
    finally:
        remove_cgroup(cgroup)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{sys.version.split()[0]}, cgroup v{version} limit {args.limit} MiB, a hog OOM-killed beside every "
        f"case but the control; /dev/kmsg {'readable' if kmsg_readable() else 'NOT readable'}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'kind':<14}{'case':<58}{'exit':>5}{'tries':>6}{'oom':>5}{'kills':>6}")
    false_retries = 0
    errors = 0
    quiet = 0
    for result in results:
        case = result.case
        flag = "yes" if result.oom else "-"
        note = ""
        retried = result.attempts > 1 or result.oom
        if result.log_missing:
            note = "  (no log record)"
        if case.hog and result.kills == 0:
            quiet += 1
            note += "  (no OOM kill while it ran: proves nothing)"
        if retried:
            false_retries += 1
            note += "  FALSE RETRY"
        if case.kind not in ("timeout", "interrupt", "person"):
            errors += 1
        print(
            f"{case.kind:<14}{case.name[:57]:<58}{result.status:>5}{result.attempts:>6}{flag:>5}{result.kills:>6}{note}"
        )
    print(
        f"\n{errors} real compile/link errors and look-alikes, {len(results) - errors} other cases; "
        f"false OOM retries: {false_retries}; cases without an OOM kill beside them: {quiet}"
    )
    return 1 if false_retries else 0


if __name__ == "__main__":
    sys.exit(main())
