"""The catalogue: the high-confidence tier of contention recognition, as data.

Each `Signature` is one regex for one kind of lock contention, with the real message that justifies it
(``example``) and the public issue or source file it comes from (``source``). A false positive reruns a
real failure, so every pattern is as narrow as the evidence allows. The generic tier (recognizer.py)
catches what this table has never seen; this table is what fi_run is sure of.

Rules that apply to all of them:

* Error codes beat English. Localized Windows, MSBuild, cl.exe and link.exe keep their codes
  (``(os error 32)``, ``[WinError 32]``, ``MSB3027``, ``LNK1168``, ``C1041``) while the text around
  them is translated, so where a code exists it is matched (``code_based=True``).
* Codes that mean something else elsewhere are ``windows_only``: Rust's ``(os error 32)`` is
  ERROR_SHARING_VIOLATION on Windows but EPIPE ("Broken pipe") on Linux and macOS, and ``(os error 33)``
  is ERROR_LOCK_VIOLATION on Windows but EDOM on POSIX.
* Wait lines (`WAIT_LINES`) are never matches: tools print them while they wait for their own lock.
* A line that says the filesystem cannot lock at all (`NEVER_RETRY`) is never a match either.
* A few messages carry a context rule (`Signature.context`): a heading whose meaning depends on the lines
  below it, or an exception whose meaning depends on the traceback frame above it.
* Patterns are matched against one normalized message of at most a few KB (recognizer.py bounds them),
  and are written so that no input makes them superlinear: no nested quantifiers, and every lazy
  ``[^\n]*?`` sits between literals. Each starts with a literal so the pre-scan is a substring search.

Imported only after a failed attempt; nothing is compiled at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "BUILTIN",
    "KILLED_CHILD_LINES",
    "NEVER_RETRY",
    "NEVER_RETRY_FAMILY",
    "OOM_FAMILY",
    "SHARING_VIOLATION_TEXTS",
    "USER_FAMILY",
    "WAIT_LINES",
    "WAIT_LINE_FAMILY",
    "Context",
    "Signature",
]


@dataclass(frozen=True)
class Context:
    """A context rule: a signature whose verdict depends on the lines around its match."""

    before: str | None = None  # regex: the match is dropped if one of the few lines above matches
    heading: bool = False  # the match is a heading: dropped if a wait / never-retry line follows it


@dataclass(frozen=True)
class Signature:
    """One regex for one kind of lock contention, with the evidence for it."""

    family: str  # e.g. "windows-lock-violation"; several Signatures may share a family
    pattern: str  # the regex source, searched in one normalized message (compiled lazily, cached)
    description: str  # one line: what contention it means
    example: str  # a real message it matches, quoted
    source: str  # URL of the public issue/doc the example comes from
    windows_only: bool = False  # only active when running on Windows
    code_based: bool = False  # True when it matches an error code, not English text
    context: Context | None = None  # a rule about the neighbouring lines, if the match alone is not enough


USER_FAMILY: Final = "user"

_Q_CLOSE = "['\"\u201d\u2019]"  # a closing quote after a path: ASCII or typographic (as in rust#108525)

# subprocess / multiprocessing under a process limit (babun/babun#871, DrQA#235) and non-blocking sockets
# (aploium/shootback#20) raise the same BlockingIOError as a held flock: the frame above tells them apart.
FORK_OR_SOCKET_FRAME: Final = (
    r"\bfork_exec\b|\bos\.fork\(|\bin _execute_child\b|\bin _launch\b|\bposix_spawn|"
    r"\bsocket\b|\.(?:connect|connect_ex|send|sendall|sendto|recv|recv_into|recvfrom|accept)\("
)

# ---------------------------------------------------------------------------------------------------
# The catalogue. Order matters only where one line could match two families: the more specific family
# comes first (an MSB3026 line also contains the Windows sharing-violation text, and is reported as
# msbuild-copy-lock).
# ---------------------------------------------------------------------------------------------------

BUILTIN: Final[tuple[Signature, ...]] = (
    # --- msbuild-copy-lock ------------------------------------------------------------------------
    # MSBuild's Copy task retries only for IO errors other than ERROR_ACCESS_DENIED ("that's likely not
    # a race, and retrying won't help. Retrying is mainly for ERROR_SHARING_VIOLATION", dotnet/msbuild
    # src/Tasks/Copy.cs). MSB3026 is the warning it prints when it starts such a retry and MSB3027 the
    # error when the retries ran out, so both codes imply a file held by another process. The codes
    # stay English in localized builds (the de-DE line below); the message text does not.
    # Known cost: MSB3026 alone also appears when a later retry succeeded and the build failed for
    # another reason; fi_run's retries are bounded, so that costs one extra attempt.
    Signature(
        family="msbuild-copy-lock",
        pattern=r"\bwarning MSB3026\b",
        description="MSBuild could not copy a file another process holds open and is retrying the copy",
        example=(
            "    73>C:\\Program Files\\Microsoft Visual Studio\\2022\\Community\\MSBuild\\Current\\Bin\\"
            "amd64\\Microsoft.Common.CurrentVersion.targets(5150,5): warning MSB3026: Could not copy "
            '"C:\\Dev\\DNN\\Source\\Build\\obj\\Debug\\netcoreapp3.1\\apphost.exe" to '
            '"bin\\Debug\\netcoreapp3.1\\Build.exe". Beginning retry 1 in 1000ms. The process cannot '
            "access the file 'bin\\Debug\\netcoreapp3.1\\Build.exe' because it is being used by another "
            'process. The file is locked by: "Build (5592)" [C:\\Dev\\DNN\\Source\\Build\\Build.csproj]'
        ),
        source="https://github.com/dnnsoftware/Dnn.Platform/issues/5562",
        code_based=True,
    ),
    Signature(
        family="msbuild-copy-lock",
        pattern=r"\berror MSB3027\b",
        description="MSBuild gave up copying a file after its retries: another process kept it locked",
        example=(
            "2026-04-10 15:42:54.024 [error] C:\\Program Files\\dotnet\\sdk\\10.0.201\\Microsoft.Common."
            'CurrentVersion.targets(4917,5): error MSB3027: "obj\\Debug\\netstandard2.0\\Consist.Pep.'
            'Database.SG.dll" konnte nicht in "bin\\Debug\\netstandard2.0\\Consist.Pep.Database.SG.dll" '
            "kopiert werden. Die zulässige Anzahl von Wiederholungen von 10 wurde überschritten. Fehler. "
            'Die Datei wird durch "CsharpDevTools (12396)" gesperrt. [c:\\Dev\\Projects\\PEP-Backend\\src\\'
            "Consist.Pep.Database.SG\\Consist.Pep.Database.SG.csproj]"
        ),
        source="https://github.com/jakubkozera/vsc-csharp-dev-tools/issues/139",
        code_based=True,
    ),
    # MSB3021 ("Unable to copy file") is raised for every copy failure, including a missing source or
    # an ACL/read-only target ("Access to the path ... is denied"), so the code alone is not enough: it
    # counts only together with the sharing-violation text.
    Signature(
        family="msbuild-copy-lock",
        pattern=r"\berror MSB3021\b[^\n]*?The process cannot access the file\b",
        description="MSBuild could not copy a file because another process is using it",
        example=(
            "C:\\dotnetCore\\2.1.14\\Microsoft.Common.CurrentVersion.targets(4106,5): error MSB3021: "
            'Unable to copy file "obj\\Debug\\netcoreapp2.0\\Test.dll" to "bin\\Debug\\netcoreapp2.0\\'
            "Test.dll\". The process cannot access the file 'D:\\Proj\\Test\\bin\\Debug\\netcoreapp2.0\\"
            "Test.dll' because"
        ),
        source="https://github.com/icsharpcode/ilspy-vscode/issues/12",
    ),
    # --- msvc-c1041 -------------------------------------------------------------------------------
    # C1041 "cannot open program database ...; if multiple CL.EXE write to the same .PDB file, please
    # use /FS": two cl.exe processes raced for one PDB. Matched by code ("error C1041" in cl's own
    # format, "error: C1041" as Qt Creator reformats it) because the text is localized (zh-CN in the
    # corpus). The "error" prefix keeps a stray "C1041" (a hash, a part number) from matching.
    Signature(
        family="msvc-c1041",
        pattern=r"\berror:? C1041\b",
        description="cl.exe could not open a PDB that another cl.exe is writing (parallel build without /FS)",
        example=(
            "fatal error C1041: cannot open program database 'C:\\src\\tmp\\pillow-test\\Pillow-7.2.0\\"
            "vc140.pdb'; if multiple CL.EXE write to the same .PDB file, please use /FS"
        ),
        source="https://github.com/pypa/setuptools/issues/2442",
        code_based=True,
    ),
    # --- link-lnk1168-lnk1104 ---------------------------------------------------------------------
    # LNK1168 "cannot open X for writing" is only ever about the linker's output: the old image is still
    # running or mapped (a test, the IDE, antivirus).
    Signature(
        family="link-lnk1168-lnk1104",
        pattern=r"\berror:? LNK1168\b",
        description="link.exe cannot overwrite its output: the old .exe/.dll is still running or held open",
        example="LINK : fatal error LNK1168: cannot open bin\\llvm-profdata.exe for writing",
        source="https://github.com/microsoft/vcpkg/issues/32712",
        code_based=True,
    ),
    # LNK1104 "cannot open file 'X'" is raised for inputs as well as outputs; for an input it means the
    # file is missing (the 'Delay.lib' negative), which no retry fixes. link.exe never reads an .exe,
    # .dll or .pyd as an input (it links against import .libs), so an image named in LNK1104 is the
    # output being written, held open by the running program, a language server or antivirus. The rule
    # is therefore: LNK1104 counts only when the file it names ends in .exe/.dll/.pyd followed by the
    # closing quote. The code matches, not the English (localized link.exe keeps "LNK1104").
    Signature(
        family="link-lnk1168-lnk1104",
        pattern=r"\berror:? LNK1104\b[^\n]*\.(?:[Ee][Xx][Ee]|[Dd][Ll][Ll]|[Pp][Yy][Dd])" + _Q_CLOSE,
        description="link.exe cannot open the .exe/.dll it is writing: another process holds the old one",
        example=(
            "  = note: LINK : fatal error LNK1104: cannot open file 'd:\\Code\\Rust\\bookshelf\\"
            "global-search\\target\\debug\\deps\\strum_macros-599a28c75e112151.dll'"
        ),
        source="https://github.com/rust-lang/rls/issues/802",
        code_based=True,
    ),
    # --- windows-lock-violation (ERROR_LOCK_VIOLATION, 33) ------------------------------------------
    # The English text names the cause and cannot occur on POSIX, so it is active on every platform
    # (the uv#2767 message must match whatever OS fi_run runs on).
    Signature(
        family="windows-lock-violation",
        pattern=r"another process has locked a portion of the file",
        description="Windows ERROR_LOCK_VIOLATION: another process holds a byte-range lock on the file",
        example=(
            "Tue, 02 Apr 2024 00:11:31 GMT error: The process cannot access the file because another "
            "process has locked a portion of the file. (os error 33)"
        ),
        source="https://github.com/astral-sh/uv/issues/2767",
    ),
    # Localized Windows keeps the code, e.g. Rust's "(os error 33)" after the translated text. On POSIX
    # 33 is EDOM ("Numerical argument out of domain"), so the code-only form is windows_only.
    Signature(
        family="windows-lock-violation",
        pattern=r"\(os error 33\)",
        description="Windows ERROR_LOCK_VIOLATION (code 33) as Rust reports it, in any UI language",
        example=(
            "[2024-04-03T12:12:41.046Z]   Caused by: The process cannot access the file because another "
            "process has locked a portion of the file. (os error 33)"
        ),
        source="https://github.com/astral-sh/uv/issues/2810",
        windows_only=True,
        code_based=True,
    ),
    # --- windows-sharing-violation (ERROR_SHARING_VIOLATION, 32) ------------------------------------
    # Only Windows ever prints this English text, so it is safe on every platform. The file name some
    # tools insert ("the file 'X' because", MSBuild) is allowed between the two halves.
    Signature(
        family="windows-sharing-violation",
        pattern=r"The process cannot access the file\b[^\n]*?\bbecause it is being used by another process",
        description="Windows ERROR_SHARING_VIOLATION: another process has the file open without sharing",
        example=(
            "  The process cannot access the file because it is being used by another process. (os error 32)"
        ),
        source="https://github.com/rust-lang/cargo/issues/9902",
    ),
    # The code forms carry localized messages (zh-CN, de-DE in the corpus), one Signature per way a
    # runtime prints code 32. windows_only: on Linux and macOS Rust prints "Broken pipe (os error 32)"
    # and "Os { code: 32, kind: BrokenPipe, ... }" for EPIPE, a reader that went away, not a lock.
    # ("[WinError 32]" and Python 2's "[Error 32]" cannot come from a POSIX process at all; they are
    # windows_only as well since only Windows ever prints them.)
    Signature(
        family="windows-sharing-violation",
        pattern=r"\(os error 32\)",
        description="Windows ERROR_SHARING_VIOLATION (code 32) as Rust reports it, in any UI language",
        example=(
            "Exception: Error while removing corrupted file: 另一个程序正在使用此文件，进程无法访问。 "  # noqa: RUF001
            "(os error 32)"
        ),
        source="https://github.com/sdbds/musubi-tuner-scripts/issues/16",
        windows_only=True,
        code_based=True,
    ),
    Signature(
        family="windows-sharing-violation",
        pattern=r"\bOs \{ code: 32\b",
        description="Windows ERROR_SHARING_VIOLATION (code 32) in a Rust io::Error debug dump",
        example=(
            "    thread 'test_cargo_freshness::rebuild_tests_if_lib_changes' panicked at 'called "
            '`Result::unwrap()` on an `Err` value: Error { repr: Os { code: 32, message: "The process '
            "cannot access the file because it is being used by another process.\" } }', "
            "C:\\bot\\slave\\auto-win-msvc-64-cargotest\\build\\src\\libcore\\result.rs:785"
        ),
        source="https://github.com/rust-lang/cargo/issues/2650",
        windows_only=True,
        code_based=True,
    ),
    Signature(
        family="windows-sharing-violation",
        pattern=r"\[WinError 32\]",
        description="Windows ERROR_SHARING_VIOLATION (code 32) as Python 3 reports it, in any UI language",
        example=(
            "PermissionError: [WinError 32] 另一个程序正在使用此文件，进程无法访问。: "  # noqa: RUF001
            "'get_ip_logs\\\\test_2019-01-29 10-24-13.txt'"
        ),
        source="https://github.com/xiaosimao/IP_POOL/issues/4",
        windows_only=True,
        code_based=True,
    ),
    Signature(
        family="windows-sharing-violation",
        pattern=r"\[Error 32\]",
        description="Windows ERROR_SHARING_VIOLATION (code 32) as Python 2 reports it, in any UI language",
        example=(
            "WindowsError: [Error 32] The process cannot access the file because it is being used by "
            "another process: 'c:\\\\users\\\\[username]\\\\appdata\\\\local\\\\temp\\\\tmpwj2af6'"
        ),
        source="https://github.com/speced/bikeshed/issues/922",
        windows_only=True,
        code_based=True,
    ),
    # The HRESULT of ERROR_SHARING_VIOLATION (UWP/WinRT file APIs, COMException, Windows Update) and the
    # constant's own name as tools log it: neither can mean anything else, in any language or platform.
    Signature(
        family="windows-sharing-violation",
        pattern=r"\b0x80070020\b",
        description="Windows ERROR_SHARING_VIOLATION (32) as an HRESULT, in any UI language",
        example=(
            "The process does not have access to the file because it is being used by another process "
            "(Exception from HRESULT: 0x80070020)"
        ),
        source="https://github.com/0x7c13/Notepads/issues/1049",
        code_based=True,
    ),
    Signature(
        family="windows-sharing-violation",
        pattern=r"\bERROR_SHARING_VIOLATION\b",
        description="Windows ERROR_SHARING_VIOLATION (32) by its constant's name",
        example="Error code 32 ERROR_SHARING_VIOLATION in Create file in testvmulti.exe",
        source="https://github.com/djpnewton/vmulti/issues/29",
        code_based=True,
    ),
    # --- etxtbsy ----------------------------------------------------------------------------------
    # ETXTBSY: writing or replacing an executable that some process is running (parallel make runs the
    # tool it is still writing; `cp` over a running binary). The strerror text is matched because the
    # number is not portable: 26 is ETXTBSY on Linux and macOS but ERROR_NOT_DOS_DISK on Windows.
    Signature(
        family="etxtbsy",
        pattern=r"\bText file busy\b",
        description="ETXTBSY: an executable is being written while a process runs it",
        example="cp: cannot create regular file '/usr/local/bin/kak': Text file busy",
        source="https://github.com/mawww/kakoune/issues/5162",
    ),
    # --- eagain-lock ------------------------------------------------------------------------------
    # Python raises BlockingIOError (EAGAIN: 11 on Linux, 35 on macOS) from fcntl.flock/lockf with
    # LOCK_NB when another process holds the lock (zc.lockfile, fasteners). The same exception also
    # comes from fork()/subprocess under a process limit and from non-blocking sockets, so a context
    # rule (`context`) drops it when the traceback frame just above it is a fork, spawn or socket call.
    # The shell's own fork failures ("fork: retry: Resource temporarily unavailable") and OpenBLAS'
    # pthread_create EAGAIN never match: the pattern requires BlockingIOError.
    Signature(
        family="eagain-lock",
        pattern=r"\bBlockingIOError: \[Errno (?:11|35)\]",
        context=Context(before=FORK_OR_SOCKET_FRAME),
        description="a non-blocking file lock (flock/lockf) is held by another process (EAGAIN)",
        example="E   BlockingIOError: [Errno 35] Resource temporarily unavailable",
        source="https://github.com/zopefoundation/zc.lockfile/issues/23",
        code_based=True,
    ),
    # HDF5 locks the file it opens; errno 11/35 (EAGAIN) means another process has it open. errno 38
    # (ENOSYS, e.g. Lustre without locking) is not contention and does not match.
    Signature(
        family="eagain-lock",
        pattern=r"\bunable to lock file, errno = (?:11|35)\b",
        description="HDF5 could not lock the file it opens: another process has it open (EAGAIN)",
        example=(
            "OSError: Unable to open file (unable to lock file, errno = 11, error message = "
            "'Resource temporarily unavailable')"
        ),
        source="https://github.com/open-mpi/ompi/issues/6535",
        code_based=True,
    ),
    # --- dpkg-lock --------------------------------------------------------------------------------
    # apt's GetLock (apt-pkg/contrib/fileutl.cc) prints "Could not get lock" only after the fcntl lock
    # failed; failing to open the lock file (not root) is "Could not open lock file" and does not match.
    Signature(
        family="dpkg-lock",
        pattern=r"\bCould not get lock /",
        description="apt could not take a dpkg/apt lock another apt, dpkg or unattended-upgrades holds",
        example=("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1797 (apt-get)"),
        source="https://github.com/osism/k8s-capi-images/issues/139",
    ),
    # Localized apt translates the sentence but keeps the lock path and "open (11:" (EAGAIN).
    Signature(
        family="dpkg-lock",
        pattern=r"/var/(?:lib/dpkg|lib/apt/lists|cache/apt/archives)/lock(?:-frontend)? - open \(11: ",
        description="apt's lock attempt failed with EAGAIN (held by another process), any UI language",
        example=(
            "E: Could not get lock /var/lib/dpkg/lock-frontend - open (11: Resource temporarily unavailable)"
        ),
        source="https://github.com/QuickBox/QB/issues/185",
        code_based=True,
    ),
    # Requires "is another process using it?": the same message ends in "are you root?" when the lock
    # could not be taken for lack of permission, which no retry fixes.
    Signature(
        family="dpkg-lock",
        pattern=(
            r"\bUnable to (?:acquire the dpkg frontend lock|lock the administration directory) "
            r"\([^)\n]*\), is another process using it\?"
        ),
        description="apt found the dpkg frontend/admin lock held by another process",
        example=(
            "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another "
            "process using it?"
        ),
        source="https://github.com/servo/ci-runners/issues/57",
    ),
    # dpkg's own message: "dpkg frontend is locked by another process", "dpkg status database is locked
    # by another process", newer "dpkg frontend lock was locked by another process with pid N".
    Signature(
        family="dpkg-lock",
        pattern=r"\bdpkg[^\n]*? (?:is|was) locked by another process",
        description="dpkg found its frontend or status-database lock held by another process",
        example="dpkg: error: dpkg frontend is locked by another process",
        source="https://github.com/microsoft/lisa/issues/660",
    ),
    # apt prints this warning only right after "Could not get lock": the lock is held by someone.
    Signature(
        family="dpkg-lock",
        pattern=r"\bBe aware that removing the lock file is not a solution\b",
        description="apt's warning that follows a dpkg lock held by another process",
        example="W: Be aware that removing the lock file is not a solution and may break your system.",
        source="https://github.com/pop-os/pop/issues/2292",
    ),
    # --- git-index-lock ---------------------------------------------------------------------------
    # git's lockfile.c: "Unable to create '<path>.lock': File exists." - another git process holds
    # index.lock (or HEAD.lock, a ref's .lock, ...). Any '<...>.lock' is accepted, so "cannot lock ref
    # 'X': Unable to create '.../X.lock': File exists." (a ref lock held by a concurrent fetch) matches
    # too. The other "cannot lock ref" errors are excluded by construction, because they are not about
    # a held lock and retrying reproduces them: "is at <sha> but expected <sha>" is a conflicting ref
    # update, and "'refs/x' exists; cannot create 'refs/x/y'" is a directory/file name clash.
    Signature(
        family="git-index-lock",
        pattern=r"\bUnable to create '[^'\n]+\.lock': File exists",
        description="another git process holds the repository's index.lock (or another .lock file)",
        example=(
            "fatal: Unable to create '/Users/nicklucas/repositories/app-wonderbill/.git/index.lock': "
            "File exists."
        ),
        source="https://github.com/Nick-Lucas/giterm/issues/37",
    ),
    # --- gradle-lock ------------------------------------------------------------------------------
    # DefaultFileLockManager's LockTimeoutException. Only the second sentence is required because
    # Gradle may wrap the path onto its own line ("Timeout waiting to lock X\n(path).\nIt is currently
    # in use ..."). "Timeout waiting to lock" is not a wait line: the wait is over and it failed.
    Signature(
        family="gradle-lock",
        pattern=r"\bIt is currently in use by another Gradle instance\b",
        description="Gradle timed out waiting for a cache/registry lock held by another Gradle process",
        example=(
            "Timeout waiting to lock file hash cache (/project-path/.gradle/4.4/fileHashes). It is "
            "currently in use by another Gradle instance."
        ),
        source="https://github.com/gradle/gradle/issues/5349",
    ),
    # --- maven-lock -------------------------------------------------------------------------------
    # maven-resolver's named locks (Maven 3.9, mvnd): "Could not acquire write lock for 'artifact:...'"
    # and "Could not acquire lock(s)". The quote / "(s)" is required so that uv's "Could not acquire
    # lock for `path`: Function not implemented (os error 38)" (a filesystem without locks) stays out.
    Signature(
        family="maven-lock",
        pattern=r"\bCould not acquire (?:(?:read|write) lock for '|lock\(s\))",
        description="Maven's resolver timed out on a named artifact lock another build thread/process held",
        example=(
            "12:53:38.601 E Internal error: java.lang.IllegalStateException: Could not acquire write "
            "lock for 'artifact:XXX' -> [Help 1]"
        ),
        source="https://github.com/apache/maven-mvnd/issues/836",
    ),
    # --- bazel-lock -------------------------------------------------------------------------------
    # With --noblock_for_lock the server says "Another command (pid=N) is running. Exiting immediately."
    # (old clients: "Another command is running (pid=N). Exiting immediately."). Without it the same
    # sentence ends in "Waiting for it to complete ...", which is a wait line (see WAIT_LINES).
    Signature(
        family="bazel-lock",
        pattern=(
            r"\bAnother command (?:\([^)\n]*\) )?is running(?: \(pid ?= ?\d+\))?\. +Exiting immediately"
        ),
        description="bazel refused to start: another bazel command holds the server/output base",
        example="Another command (pid=51955) is running. Exiting immediately.",
        source="https://github.com/bazelbuild/bazel/issues/13737",
    ),
    Signature(
        family="bazel-lock",
        pattern=r"\bExiting because the output base lock is held\b",
        description="the bazel client gave up on the output base lock (--noblock_for_lock)",
        example="Exiting because the output base lock is held and --noblock_for_lock was given",
        source=(
            "https://github.com/bazelbuild/bazel/blob/1f3f5208b6e0e253053e32ec09ae22ff21885188/"
            "src/test/shell/integration/client_test.sh"
        ),
    ),
    # Newer clients print this heading, the lock owner's lines, and then either "Waiting for it to
    # complete..." (a wait) or "Exiting because the output base lock is held ...". Alone (or followed by
    # the exit line) it is contention; followed by the wait line it is a wait. See its `context`.
    Signature(
        family="bazel-lock",
        pattern=r"\bAnother command holds the output base lock\b",
        context=Context(heading=True),
        description="another bazel client holds the output base lock",
        example="Another command holds the output base lock:",
        source="https://github.com/OpenPRoT/openprot/issues/430",
    ),
    # --- conda-lock -------------------------------------------------------------------------------
    Signature(
        family="conda-lock",
        pattern=r"\bFile lock (?:could )?on [^\n]*? not be obtained\b",
        description="conda-build could not take the package cache's .conda_lock",
        example=(
            "File lock could on C:\\miniconda\\0\\x86\\pkgs\\.conda_lock not be obtained.  You might need "
            "to try fewer builds at once.  Otherwise, run conda clean --lock"
        ),
        source="https://github.com/conda/conda-build/issues/1339",
    ),
    Signature(
        family="conda-lock",
        pattern=r"\bIt looks like conda is already doing something\b",
        description="conda found another conda's lock file (old conda)",
        example="LOCKERROR: It looks like conda is already doing something.",
        source="https://github.com/rdkit/conda-rdkit/issues/41",
    ),
    # conda 4.1's wording of the same error, naming the lock file (its suffix is the holder's pid).
    Signature(
        family="conda-lock",
        pattern=r"\bThe lock \[?'[^'\n]*\.conda_lock[^'\n]*'\]? was found\b",
        description="conda found another conda's lock file in its package cache",
        example=(
            "    The lock ['/Users/apple/anaconda/pkgs/.conda_lock-42160'] was found. Wait for it to finish "
            "before continuing."
        ),
        source="https://github.com/ContinuumIO/anaconda-issues/issues/919",
    ),
    # py-filelock's Timeout ("The file lock '%s' could not be acquired."): conda-build and other Python
    # tools waited for a lock until their timeout.
    Signature(
        family="conda-lock",
        pattern=r"\bThe file lock '[^'\n]+' could not be acquired\b",
        description="a py-filelock Timeout: another process held the lock for the whole timeout",
        example=(
            "filelock.Timeout: The file lock '/home/bjorn/anaconda3/conda-bld/noarch/.conda_lock' could "
            "not be acquired."
        ),
        source="https://github.com/conda/conda-build/issues/1564",
    ),
    # --- flexlm-license ---------------------------------------------------------------------------
    # FlexNet error -4 is "Licensed number of users already reached": every seat is taken; a seat frees
    # up when another user's job ends (minutes). Matched by code; `-4(?!\d)` keeps -40..-49 out, and -1
    # (licence file not found), -15 (server unreachable) and "license has expired" never match.
    Signature(
        family="flexlm-license",
        pattern=r"\bLicen[cs]\w*(?: [Mm]anager)? [Ee]rror ?:? ?-4(?!\d)",
        description="FlexNet error -4: all licence seats are in use by other users",
        example="FlexNet Licensing error:-4,132",
        source="https://github.com/UCL-ARC/rcps-buildscripts/issues/193",
        code_based=True,
    ),
    Signature(
        family="flexlm-license",
        pattern=r"\bLicensed number of users already reached\b",
        description="FlexNet's text for error -4: all licence seats are in use",
        example="Licensed number of users already reached.",
        source="https://github.com/UCL-ARC/rcps-buildscripts/issues/193",
    ),
    Signature(
        family="flexlm-license",
        pattern=r"\bMaximum number of users for \S+ reached\b",
        description="MATLAB's text for FlexNet error -4: all seats of a toolbox licence are in use",
        example="Maximum number of users for Signal_Blocks reached.",
        source="https://github.com/fieldtrip/fieldtrip/issues/1316",
    ),
    # --- npm-ebusy -----------------------------------------------------------------------------------
    # On Windows libuv maps ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION to EBUSY, so npm's "EBUSY:
    # resource busy or locked" is a file held by another process (an editor, antivirus, a second npm).
    # windows_only: on Linux EBUSY means a mount point or device in use (e.g. rmdir of a Docker volume
    # mounted at node_modules), which no retry fixes. npm's ENOTEMPTY is not contention at all.
    Signature(
        family="npm-ebusy",
        pattern=r"\bEBUSY\b",
        description="npm/node on Windows: a file is held open by another process (sharing violation)",
        example=(
            "npm ERR! EBUSY: resource busy or locked, rename 'C:\\Users\\workspace\\EMS_Node\\"
            "node_modules\\.staging\\normalize-package-data-dd25e9af' -> 'C:\\Users\\.jenkins\\"
            "workspace\\EMS_Node\\node_modules\\normalize-package-data'"
        ),
        source="https://github.com/npm/npm/issues/18012",
        windows_only=True,
        code_based=True,
    ),
    # --- nfs-ebusy --------------------------------------------------------------------------------
    # The NFS client renames a file that is deleted while still open to .nfs<inode><counter>; removing
    # it fails (EBUSY) until the process holding it closes it. Requires the failed removal ("cannot
    # remove" from rm, "failed to remove" from git clean and cargo) of such a file, so "Device or
    # resource busy" for a mount point does not match. Python's "OSError: [Errno 16] Device or resource
    # busy: '.nfs…'" is deliberately left out: multiprocessing prints it while cleaning up its temp dir
    # at exit, as harmless noise in outputs that fail (or succeed) for unrelated reasons.
    Signature(
        family="nfs-ebusy",
        pattern=r"\bremove[^\n]*?[/\\]\.nfs[0-9a-fA-F]{8,}",
        description="an NFS silly-renamed .nfsXXXX file cannot be removed while a process keeps it open",
        example=(
            "rm: cannot remove `./spark-2.0.0/build/zinc-0.3.9/lib/.nfs00000000000cb22e0000166a': "
            "Device or resource busy"
        ),
        source="https://github.com/rcgsheffield/sheffield_hpc/issues/362",
    ),
    # --- pip-uninstall-race -----------------------------------------------------------------------
    # Two pips upgrading the same package in one environment: the second finds the file already moved
    # into the first one's uninstall stash (`<tmp>/pip-XXXX-uninstall/<path>`, pip >= 10
    # `pip-uninstall-XXXX`). The identical message also comes from a single pip on macOS that fails on
    # alternate runs (pypa/pip#3011, a corpus negative); nothing in the line tells the two apart except
    # that that case's stash lives in macOS' per-user temp dir, so stashes under /var/folders/ are not
    # trusted. A missed retry costs less than a retried real failure. "[Errno 39] Directory not empty",
    # "[Errno 18] Invalid cross-device link" (overlayfs) and missing-RECORD errors never match.
    Signature(
        family="pip-uninstall-race",
        pattern=(
            r"\bFileNotFoundError: \[Errno 2\] No such file or directory: '[^'\n]+' -> "
            r"'(?!/var/folders/)[^'\n]*?[/\\]pip-(?:[a-z0-9_]+-uninstall|uninstall-[a-z0-9_]+)[/\\]"
        ),
        description="two pip processes uninstall the same package: the file is already in the other's stash",
        example=(
            "    FileNotFoundError: [Errno 2] No such file or directory: '/root/ocrd_all/venv/local/"
            "sub-venv/headless-tf1/bin/pip' -> '/tmp/pip-07jk920k-uninstall/root/ocrd_all/venv/local/"
            "sub-venv/headless-tf1/bin/pip'"
        ),
        source="https://github.com/OCR-D/ocrd_all/issues/165",
    ),
    # --- sccache-ccache ---------------------------------------------------------------------------
    # Several compilers start the sccache server at once; the losers cannot bind its port
    # (EADDRINUSE: 98 Linux, 48 macOS, 10048 Windows) or time out while the winner starts.
    Signature(
        family="sccache-ccache",
        pattern=r"\bsccache: error: Server startup failed: [^\n]*\(os error (?:98|48|10048)\)",
        description="another sccache server is starting on the same port (EADDRINUSE)",
        example="sccache: error: Server startup failed: Address already in use (os error 98)",
        source="https://github.com/mozilla/sccache/issues/824",
        code_based=True,
    ),
    Signature(
        family="sccache-ccache",
        pattern=r"\bsccache: error: Timed out waiting for server startup\b",
        description="sccache timed out while another client was starting the shared server",
        example="#13 10.62 sccache: error: Timed out waiting for server startup",
        source="https://github.com/mozilla/sccache/issues/1153",
    ),
    # --- sqlite-busy ------------------------------------------------------------------------------
    # SQLITE_BUSY (5), "database is locked": another connection holds the database lock. SQLite's error
    # strings are not localized. "database table is locked" is SQLITE_LOCKED (6), a conflict inside
    # one connection that retrying reproduces; it does not contain "database is locked".
    Signature(
        family="sqlite-busy",
        pattern=r"\bdatabase (?:file )?is locked\b",
        description="SQLITE_BUSY: another connection holds the SQLite database lock",
        example="sqlite3.OperationalError: database is locked",
        source="https://github.com/piskvorky/sqlitedict/issues/144",
    ),
    # The result code's name, as drivers print it (Android's "(code 5 SQLITE_BUSY)", Go's sqlite3 errors).
    Signature(
        family="sqlite-busy",
        pattern=r"\bSQLITE_BUSY\b",
        description="SQLITE_BUSY by name: another connection holds the SQLite database lock",
        example="SQLITE_BUSY: The database file is locked",
        source="https://www.sqlite.org/rescode.html#busy",
        code_based=True,
    ),
    # SQLITE_BUSY_RECOVERY (261) as rusqlite and Deno describe it: another connection is recovering the WAL.
    Signature(
        family="sqlite-busy",
        pattern=r"\bAnother process is recovering a WAL mode database file\b",
        description="SQLITE_BUSY_RECOVERY: another connection is recovering the database's WAL",
        example="    Error code 261: Another process is recovering a WAL mode database file)",
        source="https://github.com/denoland/deno/issues/27283",
    ),
    # --- uv-lock ----------------------------------------------------------------------------------
    # uv's LockedFileError::Timeout (crates/uv-fs/src/locked_file.rs): it waited UV_LOCK_TIMEOUT for a
    # cache/environment lock another uv held. Not a wait line: the wait is over.
    Signature(
        family="uv-lock",
        pattern=r"\bTimeout \(\d+s\) when waiting for lock on ",
        description="uv waited UV_LOCK_TIMEOUT for a lock another uv process held",
        example="Timeout (300s) when waiting for lock on `/mnt/uv_cache/sdists-v9/editable/…`,",
        source="https://github.com/RBLN-SW/vllm-rbln/pull/985",
    ),
    # The context of uv's error chain: its cause follows on the next lines. It is contention when the
    # cause is a timeout or a Windows lock violation, not when the cause is a filesystem without locks
    # ("failed to lock ...: Bad file descriptor (os error 9)" on NFS, os error 38). See its `context`.
    Signature(
        family="uv-lock",
        pattern=r"\bFailed to acquire lock on the distribution cache\b",
        context=Context(heading=True),
        description="uv could not lock its distribution cache (another uv holds it)",
        example="Failed to acquire lock on the distribution cache",
        source="https://github.com/RBLN-SW/vllm-rbln/pull/985",
    ),
    # --- yarn-cache-race --------------------------------------------------------------------------
    # yarn 1 has no cache lock unless --mutex is given, so concurrent installs sharing a cache trip
    # over each other's half-written entries: ENOENT/ENOTEMPTY/EEXIST on a path inside the cache
    # (…/yarn/v6/npm-…, …/Yarn/Cache/v6/npm-… on Windows). The same codes in node_modules (npm's
    # ENOTEMPTY negatives) do not match. ("E(?:NOENT|NOTEMPTY|EXIST)" rather than "(?:ENOENT|...)" only
    # so that the pattern starts with a literal, which keeps the pre-scan fast.)
    Signature(
        family="yarn-cache-race",
        pattern=r"\bE(?:NOENT|NOTEMPTY|EXIST)\b[^\n]*?[/\\][Yy]arn[/\\](?:[Cc]ache[/\\])?v\d+[/\\]npm-",
        description="concurrent yarn 1 installs raced on an entry of their shared cache",
        example=(
            "  Error: ENOTEMPTY: directory not empty, rmdir '/Users/dalvarez/Library/Caches/Yarn/v6/"
            "npm-@mui-icons-material-5.8.4-3f2907c9f8f5ce4d754cb8fb4b68b5a1abf4d095-integrity/"
            "node_modules/@mui/icons-material'"
        ),
        source="https://github.com/yarnpkg/yarn/issues/8854",
        code_based=True,
    ),
    # --- terraform-state-lock -----------------------------------------------------------------------
    # terraform's backend lock (DynamoDB item, Azure blob lease, GCS object): "Error acquiring the state
    # lock" is printed when another run holds it (the Lock Info block with its ID and Who follows).
    Signature(
        family="terraform-state-lock",
        pattern=r"\bError acquiring the state lock\b",
        description="terraform could not take the state lock another terraform run holds",
        example=(
            "Error: Error locking state: Error acquiring the state lock: ConditionalCheckFailedException: "
            "The conditional request failed"
        ),
        source="https://github.com/alphagov/govuk-infrastructure/pull/297",
    ),
    # --- vcpkg-lock -------------------------------------------------------------------------------
    # vcpkg locks .vcpkg-root (vcpkg-running.lock in manifest mode) for the whole run; a second vcpkg in
    # the same root (parallel CMake configures) fails with this once it stops waiting.
    Signature(
        family="vcpkg-lock",
        pattern=r"\bFailed to take the filesystem lock on ",
        description="vcpkg could not lock its root: another vcpkg runs against the same directory",
        example="2. Failed to take the filesystem lock on /opt/src/vcpkg/.vcpkg-root",
        source="https://github.com/microsoft/vcpkg/issues/18903",
    ),
    # --- snap-change ------------------------------------------------------------------------------
    # snapd serializes changes per snap: a second install/refresh of the same snap is refused while the
    # first change is in progress (HTTP 409, kind snap-change-conflict).
    Signature(
        family="snap-change",
        pattern=r"\bsnap(?:ctl)?: snap \"[^\"\n]+\" has (?:\"[^\"\n]+\" change|changes) in progress\b",
        description="snapd refused a change: another change of the same snap is in progress",
        example=(
            "Error: installing missing components: installing components: installing "
            '"openvino-model-server": '
            'exit status 1: error: snapctl: snap "gemma4" has changes in progress'
        ),
        source="https://github.com/canonical/inference-snaps/issues/327",
    ),
    Signature(
        family="snap-change",
        pattern=r"\berror: snap \"[^\"\n]+\" has \"[^\"\n]+\" change in progress\b",
        description="snap refused a change: another change of the same snap is in progress",
        example='**error: snap "eclipse" has "install-snap" change in progress**',
        source="https://github.com/itgoyo/500Days-Of-Github/issues/187",
    ),
    Signature(
        family="snap-change",
        pattern=r"\bkind-snap-change-conflict\b",
        description="snapd's API error kind for a change that conflicts with one in progress",
        example="install woe-usb: status-code=409 kind-snap-change-conflict message=snap",
        source="https://github.com/snapcrafters/obs-studio/issues/127",
    ),
    # --- msi-install-running ----------------------------------------------------------------------
    # Windows Installer runs one installation at a time (its _MSIExecute mutex); another one gets
    # ERROR_INSTALL_ALREADY_RUNNING: 1618 as an exit code, 0x80070652 as an HRESULT; winget reports
    # APPINSTALLER_CLI_ERROR_INSTALL_INSTALL_IN_PROGRESS (0x8A150102). It clears when the other install ends.
    # The wordings without a code ("Another installation is in progress") are the generic tier's.
    Signature(
        family="msi-install-running",
        pattern=r"\b0x80070652\b",
        description="Windows Installer is busy with another installation (ERROR_INSTALL_ALREADY_RUNNING)",
        example=(
            "0x80070652 - Another installation is already in progress.  Complete that installation before "
            "proceeding with this install."
        ),
        source="https://github.com/tailscale/tailscale/issues/13803",
        code_based=True,
    ),
    Signature(
        family="msi-install-running",
        pattern=r"\bexit code:? 1618\b",
        description="an MSI installer exited 1618: another installation was in progress",
        example="Installer failed with exit code: 1618",
        source="https://github.com/microsoft/winget-cli/issues/433",
        code_based=True,
    ),
    Signature(
        family="msi-install-running",
        pattern=r"\b0x8A150102\b",
        description="winget: another installation is in progress (its INSTALL_IN_PROGRESS error)",
        example=(
            "`Another installation is already in progress. Try again later. (0x8A150102)` Error when "
            "updating an app"
        ),
        source="https://github.com/NexovaDev/UpdateHub/issues/2679",
        code_based=True,
    ),
    # --- pacman-lock ------------------------------------------------------------------------------
    # libalpm's ALPM_ERR_HANDLE_LOCK ("unable to lock database"): db.lck exists, i.e. another pacman runs
    # (or one died and left it: identical text). "could not lock database: Permission denied" (not root)
    # does not contain this text.
    Signature(
        family="pacman-lock",
        pattern=r"\(unable to lock database\)",
        description="pacman/libalpm found db.lck: another pacman holds the package database",
        example="error: failed to synchronize all databases (unable to lock database)",
        source="https://github.com/giuspen/cherrytree/issues/2284",
    ),
    # --- docker-overlay-ebusy ---------------------------------------------------------------------
    # dockerd mounting a container's overlay while another operation (a concurrent build, push or
    # remove) still has the layer mounted; it succeeds once that finishes.
    Signature(
        family="docker-overlay-ebusy",
        pattern=r"\berror creating overlay mount to [^\n]*?: device or resource busy",
        description="dockerd could not mount a layer another concurrent docker operation holds",
        example=(
            "error creating overlay mount to /var/lib/docker/overlay2/e3003381a4b9d9ef5f527fb36eeb14b98709bed"
            "c5a5535f11c42011fae171cd2/merged: device or resource busy"
        ),
        source="https://github.com/docker/for-linux/issues/711",
    ),
    # --- zc-lockfile ------------------------------------------------------------------------------
    # zc.lockfile (ZODB, buildout, pytest-cache's ancestors) raises LockError("Couldn't lock %r") when its
    # non-blocking flock / msvcrt.locking fails: another process holds the lock file.
    Signature(
        family="zc-lockfile",
        pattern=r"\bLockError: Couldn't lock '",
        description="zc.lockfile could not take a lock file another process holds (ZODB, buildout)",
        example="zc.lockfile.LockError: Couldn't lock '/srv/zeo/var/Data.fs.lock'",
        source=(
            "https://github.com/zopefoundation/zc.lockfile/blob/82377e843b224ff6286de5cc203980fb7f636544/"
            "src/zc/lockfile/__init__.py"
        ),
    ),
    # --- ccache-tmp-race --------------------------------------------------------------------------
    # ccache writes the compiler's output to <cache>/tmp/tmp.cpp_stderr.<host>.<pid>...; another ccache
    # cleaning the shared tmp directory removes it underneath (ccache#480, ccache#154).
    Signature(
        family="ccache-tmp-race",
        pattern=(
            r"\bccache: (?:error|FATAL): Failed to open [^\n]*?[/\\]tmp\.\w+\.[^\n]*?: "
            r"No such file or directory"
        ),
        description="another ccache removed this ccache's temporary file from the shared cache directory",
        example=(
            "ccache: error: Failed to open /home/winetest/.ccache/tmp/tmp.cpp_stderr.fgtbdebian10.2470."
            "JcWDlw: "
            "No such file or directory"
        ),
        source="https://github.com/ccache/ccache/issues/480",
    ),
)

# ---------------------------------------------------------------------------------------------------
# Windows' "file in use" text in other languages: ERROR_SHARING_VIOLATION (32), ERROR_LOCK_VIOLATION (33)
# and .NET's IOException wording, for the lines that carry no code (.NET, PowerShell, Win32Exception,
# libtorrent, pywin32 tuples). Each is a fragment of the real text, and where it was found: a real line in a
# public issue, or ReactOS' message table (errcodes.mc, which follows Windows' own). The recognizer also
# matches them garbled the usual ways (UTF-8 shown in a legacy code page, an OEM code page shown as ANSI,
# accents lost to "?"): see recognizer.py, `_localized`. Lines with a code ("(os error 32)", "[WinError
# 32]", "HRESULT 0x80070020") need no text at all. (language, fragment, source)
# ---------------------------------------------------------------------------------------------------

_REACTOS_ERRCODES: Final = (
    "https://github.com/reactos/reactos/blob/067ce08a123bb9673914d7ce7454c962f4074f7a/"
    "sdk/include/reactos/mc/errcodes.mc"
)
_ROUND_ONE: Final = ""  # kept from the first localization round (issue 11); no public source was recorded

SHARING_VIOLATION_TEXTS: Final[tuple[tuple[str, str, str], ...]] = (
    ("zh-CN", "另一个程序正在使用此文件", "https://github.com/xiaosimao/IP_POOL/issues/4"),
    ("zh-CN", "正由另一进程使用", "https://github.com/Wox-launcher/Wox/issues/819"),  # .NET IOException
    ("zh-CN", "已锁定文件的一部分", _ROUND_ONE),  # 33
    ("zh-TW", "另一個程序正在使用此檔案", _ROUND_ONE),
    ("zh-TW", "正由另一個程序使用", _ROUND_ONE),  # .NET
    ("ja", "別のプロセスが使用中", _ROUND_ONE),
    ("ja", "他のプロセスによって使用されているため", _REACTOS_ERRCODES),
    ("ja", "他のプロセスがファイルの一部をロックしたため", _REACTOS_ERRCODES),  # 33
    ("ko", "다른 프로세스가", _ROUND_ONE),
    ("de", "von einem anderen prozess verwendet", "https://github.com/duplicati/duplicati/issues/1388"),
    ("de", "einen teil der datei gesperrt", _ROUND_ONE),  # 33
    ("fr", "utilisé par un autre processus", "https://github.com/ssenart/PyGazpar/issues/65"),
    ("es", "siendo utilizado por otro proceso", _ROUND_ONE),
    ("it", "utilizzato da un altro processo", _ROUND_ONE),
    ("ru", "используется другим процессом", _REACTOS_ERRCODES),
    ("ru", "занят другим процессом", "https://github.com/oscript-library/gitsync/issues/182"),
    ("ru", "другой процесс заблокировал часть файла", _REACTOS_ERRCODES),  # 33
    ("pl", "używany przez inny proces", _REACTOS_ERRCODES),
    ("pl", "inny proces zablokował jego część", _REACTOS_ERRCODES),  # 33
    ("ro", "este utilizat într-un alt proces", _REACTOS_ERRCODES),
    ("ro", "a fost blocată într-un alt proces", _REACTOS_ERRCODES),  # 33
    ("nl", "wordt gebruikt door een ander proces", _ROUND_ONE),
    ("nb", "brukes av en annen prosess", "https://github.com/overfl0/Bulletproof-Arma-Launcher/issues/77"),
    ("tr", "başka bir işlem tarafından kullanıldığından", _ROUND_ONE),  # noqa: RUF001 - its dotless i is the point
    ("pt-BR", "sendo usado por outro processo", "https://github.com/tjguk/winsys/issues/10"),
)

# ---------------------------------------------------------------------------------------------------
# Wait lines: printed while a tool waits for its own lock. The tool goes on once the lock is free, so
# such a line says nothing about why the attempt failed; it is skipped before any family is tried.
# Matched case-sensitively and as whole phrases, so that failures that merely contain "waiting"
# ("Timeout waiting to lock" from Gradle, "Timed out waiting for server startup" from sccache,
# "Timeout (300s) when waiting for lock" from uv) are not mistaken for waits.
# ---------------------------------------------------------------------------------------------------

WAIT_LINE_FAMILY: Final = "wait-line"

WAIT_LINES: Final[tuple[Signature, ...]] = (
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bBlocking waiting for file lock on ",
        description="cargo waits for its package cache / build directory lock",
        example="    Blocking waiting for file lock on the git database",
        source="https://github.com/rust-lang/cargo/issues/2566",
    ),
    # uv: "Waiting to acquire lock for `X` at `Y`", newer "Waiting to acquire exclusive lock for ...";
    # Gradle's debug log: "Waiting to acquire shared lock on daemon addresses registry."
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bWaiting to acquire (?:(?:shared|exclusive) )?lock (?:for|on) ",
        description="uv (or Gradle, in its debug log) waits for a cache/environment lock",
        example="INFO Waiting to acquire lock for `/Users/xxxxxx/.cache/uv` at `.cache/uv/.lock`",
        source="https://github.com/astral-sh/uv/issues/16112",
    ),
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bCache is currently in-use, waiting for other uv processes to finish\b",
        description="uv cache clean/prune waits for other uv processes",
        example=(
            "Cache is currently in-use, waiting for other uv processes to finish (use `--force` to override)"
        ),
        source="https://github.com/astral-sh/setup-uv/issues/646",
    ),
    # apt >= 1.9 waits for the lock (apt-pkg/deb/debsystem.cc: "Waiting for cache lock: %s") and shows
    # the lock error inside the wait line: without this exclusion dpkg-lock would match it.
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bWaiting for cache lock: ",
        description="apt waits for the dpkg lock another apt/unattended-upgrades holds",
        example=(
            "Waiting for cache lock: Could not get lock /var/lib/dpkg/lock-frontend. It is held by "
            "process 1538"
        ),
        source="https://github.com/hiddify/Hiddify-Manager/issues/3631",
    ),
    # Server: "Another command (pid=N) is running. Waiting for it to complete on the server (...)...";
    # old client: "Another command is running (pid = N).  Waiting for it to complete..."; new client:
    # "Waiting for it to complete..." on its own line after "Another command holds the output base lock:".
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bWaiting for it to complete\b",
        description="bazel waits for another bazel command to finish",
        example=(
            "Another command (pid=51955) is running. Waiting for it to complete on the server "
            "(server_pid=10543)..."
        ),
        source="https://github.com/bazelbuild/bazel/issues/13737",
    ),
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bWaiting for the other yarn instance to finish\b",
        description="yarn --mutex waits for another yarn",
        example="warning Waiting for the other yarn instance to finish",
        source="https://github.com/yarnpkg/yarn/issues/1993",
    ),
    # yum (yummain.py) while it waits for another yum: then "Another app is currently holding the yum lock".
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\bExisting lock [^\n]*?: another copy is running as pid \d+",
        description="yum waits for the yum lock another yum holds",
        example="     > Existing lock /var/run/yum.pid: another copy is running as pid 2990.",
        source="https://github.com/sormy/gentoo-ami-builder/issues/9",
    ),
    # ccache's debug log while it polls a lock file (lockfile.c).
    Signature(
        family=WAIT_LINE_FAMILY,
        pattern=r"\blockfile_acquire: (?:failed to|could not) acquire [^\n]*; sleeping \d+ ",
        description="ccache polls a lock file another ccache holds (debug log)",
        example=(
            "lockfile_acquire: could not acquire ${MY_SHARED_NFS_FOLDER}/test_lock.txt.lock; sleeping "
            "1000 us before retrying"
        ),
        source="https://github.com/ccache/ccache/issues/124",
    ),
)

# ---------------------------------------------------------------------------------------------------
# Never retry: the filesystem cannot lock at all (flock/fcntl unsupported, no lock daemon). Waiting
# does not change that, so a line saying so is never a match, and it cancels a context heading (uv's
# "Failed to acquire lock on the distribution cache") whose cause it is.
# ---------------------------------------------------------------------------------------------------

NEVER_RETRY_FAMILY: Final = "lock-unsupported"

NEVER_RETRY: Final[tuple[Signature, ...]] = (
    Signature(
        family=NEVER_RETRY_FAMILY,
        pattern=r"\bFunction not implemented \(os error 38\)|\[Errno 38\] Function not implemented\b",
        description="ENOSYS from flock: the filesystem has no locking (Lustre, some cluster homes)",
        example=(
            "error: Could not acquire lock for `.local/share/uv/python` at `.local/share/uv/python/"
            ".lock`: Function not implemented (os error 38)"
        ),
        source="https://github.com/astral-sh/uv/issues/9050",
    ),
    Signature(
        family=NEVER_RETRY_FAMILY,
        pattern=r"\bNo locks available\b",
        description="ENOLCK: an NFS mount without a lock daemon",
        example="OSError: [Errno 37] No locks available",
        source="https://github.com/ComparativeGenomicsToolkit/cactus/issues/1299",
    ),
    Signature(
        family=NEVER_RETRY_FAMILY,
        pattern=r"\bfailed to lock [^\n]*?: (?:Unknown error|Bad file descriptor)\b",
        description="uv's lock call itself failed (NFS without flock support, exotic filesystems)",
        example=(
            "failed to lock `/home/tom/.cache/uv/git-v0/locks/4151ffe5593086de`: Bad file descriptor "
            "(os error 9)"
        ),
        source="https://github.com/astral-sh/uv/issues/18061",
    ),
)

# ---------------------------------------------------------------------------------------------------
# A killed child (issue 19): a compiler driver, linker or build tool saying that a process it ran was
# killed by SIGKILL, which is how the kernel's OOM killer ends one. Not contention, and never enough on its
# own: recognizer.oom_verdict retries such an attempt (family OOM_FAMILY) only when the kernel also counted
# an OOM kill while it ran, because a person, a timeout or a watchdog sends the same SIGKILL. Signal 9 is
# matched by its number where the tool prints one, so translated messages match too. The corpus of real
# lines (and of look-alikes that die of other signals) is tests/data/contention/oom.tsv and negative.tsv.
# ---------------------------------------------------------------------------------------------------

OOM_FAMILY: Final = "oom"

KILLED_CHILD_LINES: Final[tuple[Signature, ...]] = (
    # gcc's driver (gcc.cc, execute()): "%s signal terminated program %s", the first %s strsignal(9):
    # "Killed", or translated ("已杀死" in zh_CN). Other signals print their own names (Segmentation fault).
    Signature(
        family=OOM_FAMILY,
        pattern=r"(?:\bKilled|已杀死) signal terminated program \S",
        description="the gcc driver: the compiler it ran (cc1, cc1plus, lto1) was killed by SIGKILL",
        example="g++: fatal error: Killed signal terminated program cc1plus",
        source="https://github.com/hoytech/strfry/issues/41",
    ),
    # gcc before 8 reported the same as an internal compiler error.
    Signature(
        family=OOM_FAMILY,
        pattern=r"\binternal compiler error: Killed \(program \S",
        description="gcc before 8: the compiler it ran was killed by SIGKILL",
        example="c++: internal compiler error: Killed (program cc1plus)",
        source="https://github.com/emscripten-core/emscripten/issues/4480",
    ),
    # collect2 (and lto-wrapper): "%s terminated with signal %d [%s]", the bracket translated.
    Signature(
        family=OOM_FAMILY,
        pattern=r"\bterminated with signal 9 \[",
        description="gcc's collect2 or lto-wrapper: the linker (ld) or LTO compiler was killed by SIGKILL",
        example="collect2: fatal error: ld terminated with signal 9 [Killed]",
        source="https://github.com/llvm/llvm-project/issues/65276",
        code_based=True,
    ),
    # clang's driver: "unable to execute command: " + the signal's description ("Killed: 9" on macOS).
    Signature(
        family=OOM_FAMILY,
        pattern=r"\berror: unable to execute command: Killed\b",
        description="the clang driver: the compiler or linker it ran was killed by SIGKILL",
        example="clang: error: unable to execute command: Killed",
        source="https://github.com/travis-ci/travis-ci/issues/5624",
    ),
    # cargo: "process didn't exit successfully: `rustc ...` (signal: 9, SIGKILL: kill)".
    Signature(
        family=OOM_FAMILY,
        pattern=r"\(signal: 9, SIGKILL: kill\)",
        description="cargo: rustc (or a build script) was killed by SIGKILL",
        example=(
            "  process didn't exit successfully: `rustc --crate-name http <home dir user>/.cargo/registry/"
            "src/github.com-1ecc6299db9ec823/http-0.1.18/src/lib.rs --error-format=json --json=diagnostic-"
            "rendered-ansi,artifacts --crate-type lib --emit=dep-info,metadata,link -C debuginfo=2 -C "
            "metadata=5e65cd06fec7b225 -C extra-filename=-5e65cd06fec7b225 --out-dir <project dir>/target/"
            "debug/deps -L dependency=<project dir>/target/debug/deps --extern bytes=<project dir>/target/"
            "debug/deps/libbytes-e6b084f01d402f98.rmeta --extern fnv=<project dir>/target/debug/deps/"
            "libfnv-2d20872f38ef202c.rmeta --extern itoa=<project dir>/target/debug/deps/libitoa-"
            "0a472b1c1190df6a.rmeta --cap-lints allow` (signal: 9, SIGKILL: kill)"
        ),
        source="https://github.com/hyperium/http/issues/341",
        code_based=True,
    ),
    # go build: os/exec's ProcessState.String() for SIGKILL.
    Signature(
        family=OOM_FAMILY,
        pattern=r": signal: killed\b",
        description="go build: the compiler or linker it ran was killed by SIGKILL",
        example=(
            "go build github.com/yuin/goldmark/util: /home/vagrant/.goenv/versions/1.14.6/pkg/tool/"
            "linux_amd64/compile: signal: killed"
        ),
        source="https://github.com/yuin/goldmark/issues/159",
    ),
    # nvcc: "'cicc' died due to signal 9 (Kill signal)".
    Signature(
        family=OOM_FAMILY,
        pattern=r"\bdied due to signal 9\b",
        description="nvcc: the CUDA compiler stage it ran (cicc, cudafe++, ptxas) was killed by SIGKILL",
        example="nvcc error   : 'cicc' died due to signal 9 (Kill signal)",
        source="https://github.com/microsoft/onnxruntime/issues/18579",
        code_based=True,
    ),
    # A shell's report of a command of its script that SIGKILL ended: "line N: PID Killed   COMMAND".
    Signature(
        family=OOM_FAMILY,
        pattern=r"(?:\bline|行) \d+: +\d+ (?:Killed|已杀死)\b",
        description="a shell (bash, sh): a command of its script was killed by SIGKILL",
        example=(
            "/bin/bash: line 1:  2048 Killed                  cn5-db prepare_data "
            "data/assertions/assertions.msgpack data/psql"
        ),
        source="https://github.com/commonsense/conceptnet5/issues/162",
    ),
    # GNU make: "*** [TARGET] Killed" (strsignal of the recipe's signal; translated in other locales).
    Signature(
        family=OOM_FAMILY,
        pattern=r"\*\*\* \[[^\]\n]*\] (?:Killed|已杀死)$",
        description="GNU make: a recipe was killed by SIGKILL",
        example="make[2]: *** [s-attrtab] 已杀死",
        source="https://github.com/retrofw/retrofw.github.io/issues/32",
    ),
)
