"""docs/reference.md's tables say what the code does: options, environment variables, exit statuses, the log
line schema, the report's and `fi-run locks`'s --json keys and the signature families each have one home in
the code, and these tests fail when the page and the code drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fi_run.cli import OPTIONS, Option
from fi_run.errors import EXIT_SIGNAL_BASE, EXIT_STATUSES
from fi_run.observe import lockview, report, schema
from fi_run.records import DEFAULT_RETRIES

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def section(heading: str) -> str:
    """The text of the ``## heading`` section of docs/reference.md, up to the next ``## ``."""
    text = REFERENCE.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/reference.md has no '## {heading}' section"
    return match.group(1)


def table(heading: str) -> list[list[str]]:
    """The first table of a section: its body rows (header and rule dropped), cells stripped."""
    rows = []
    for line in section(heading).splitlines():
        if line.startswith("|"):
            # Split on pipes that are not escaped (`a\|b` stays one cell).
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    assert len(rows) > 2, f"no table in '## {heading}'"
    return rows[2:]


def option_cell(option: Option) -> str:
    """How the options table names an option: each flag in backticks, the canonical one with its metavar."""
    *others, last = option.flags
    canonical = f"`{last} {option.metavar}`" if option.metavar else f"`{last}`"
    return ", ".join([*(f"`{flag}`" for flag in others), canonical])


def test_the_options_table_lists_every_option_in_order_with_its_environment_default() -> None:
    documented = [(row[0], row[2]) for row in table("Options")]
    expected = [(option_cell(o), f"`{o.env}`" if o.env else "") for o in OPTIONS]
    assert documented == expected


def test_the_options_table_says_repeatable_exactly_for_repeatable_options() -> None:
    meanings = {row[0]: row[1] for row in table("Options")}
    for option in OPTIONS:
        assert ("Repeatable." in meanings[option_cell(option)]) == option.repeatable, option.name


def test_the_retries_default_is_the_code_s() -> None:
    meanings = {row[0]: row[1] for row in table("Options")}
    assert f"(default {DEFAULT_RETRIES}," in meanings["`--retries N`"]


def test_every_environment_default_is_in_the_environment_table_and_no_other_fi_run_default() -> None:
    rows = {row[0]: row[1] for row in table("Environment variables")}
    defaults = {name: does for name, does in rows.items() if does.startswith("default for ")}
    assert defaults == {f"`{o.env}`": defaults.get(f"`{o.env}`", "") for o in OPTIONS if o.env}, (
        "a variable is missing, or one says 'default for' without being an option's"
    )
    for option in OPTIONS:
        if option.env:
            assert defaults[f"`{option.env}`"].startswith(f"default for `{option.name}`"), option.env


def test_the_exit_status_table_is_errors_exit_statuses() -> None:
    rows = table("Exit status")
    assert rows[0][0] == "the command's"

    def status_cell(status: int) -> str:
        return f"{status} + N" if status == EXIT_SIGNAL_BASE else str(status)

    assert [(row[0], row[1]) for row in rows[1:]] == [
        (status_cell(status), meaning.removeprefix("+N ")) for status, meaning in EXIT_STATUSES
    ]


def test_the_help_text_carries_the_same_exit_statuses() -> None:
    # --help is built from EXIT_STATUSES too: the page, the help and the code cannot disagree.
    from fi_run.helptext import help_text

    text = " ".join(help_text().split())
    for status, meaning in EXIT_STATUSES:
        assert f"{status} {meaning}" in text


def test_the_log_line_schema_table_lists_the_record_s_keys_in_order() -> None:
    keys = [key for row in table("Log line schema") for key in re.findall(r"`(\w+)`", row[0])]
    assert keys == list(schema.STEP_KEYS)


def test_the_log_line_schema_names_the_nested_records_keys() -> None:
    meanings = {row[0]: row[2] for row in table("Log line schema")}
    assert "{" + ", ".join(schema.ATTEMPT_KEYS) + "}" in meanings["`attempts`"]
    assert "{" + ", ".join(schema.LOCK_KEYS) + "}" in meanings["`locks`"]
    assert "{" + ", ".join(schema.LOAN_KEYS) + "}" in meanings["`lent`"]


def test_the_report_json_keys_table_is_the_report_s() -> None:
    keys = [key for row in table("report --json keys") for key in re.findall(r"^`(\w+)`|, `(\w+)`", row[0])]
    flat = [name for pair in keys for name in pair if name]
    assert flat == list(report.JSON_KEYS)


def test_the_locks_json_keys_table_is_the_view_s() -> None:
    rows = {row[0]: row[1] for row in table("locks --json keys")}
    top = [cell.strip("`") for cell in rows if re.fullmatch(r"`\w+`", cell)]
    assert top == list(lockview.JSON_KEYS)

    def braces(keys: tuple[str, ...]) -> str:
        return "{" + ", ".join(keys) + "}"

    assert rows["`coordinators`"].startswith(f"`[{braces(lockview.COORDINATOR_KEYS)}]`")
    assert rows["`resources`"].startswith(f"`[{braces(lockview.RESOURCE_KEYS)}]`")
    assert rows["`holders[]`"].startswith(f"`{braces(lockview.HOLDER_KEYS)}`")
    assert rows["`waiters[]`"].startswith(f"`{braces(lockview.WAITER_KEYS)}`")
    assert rows["`modes[]`"].startswith(f"`{braces(lockview.MODE_KEYS)}`")


def families_listed() -> list[str]:
    """The families `fi_run --list-signatures` prints, whatever the catalogue's layout: each entry starts
    at the beginning of a line with its family name; indented lines are its details."""
    listing = subprocess.run(
        [sys.executable, "-m", "fi_run", "--list-signatures"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    names = [m.group(1) for m in re.finditer(r"^([a-z0-9][a-z0-9-]*)\b", listing, re.MULTILINE)]
    assert names, listing
    return sorted(set(names))


@pytest.fixture(scope="module")
def families() -> list[str]:
    return families_listed()


def test_every_family_fi_run_lists_is_documented_and_no_other(families: list[str]) -> None:
    documented = sorted(row[0].strip("`") for row in table("Signature families"))
    assert documented == families


def test_the_code_map_names_every_module_and_no_other() -> None:
    """docs/README.md's "Where things are in the code" names every module of fi_run/ (issue 17), by its path
    or, inside a package's bullet, by its file name; and names no module that is not there."""
    text = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Where things are in the code\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match
    code_map = match.group(1)
    package = ROOT / "fi_run"
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    )
    for module in modules:
        parent, _, name = module.rpartition("/")
        bullets = [b for b in re.split(r"\n(?=- )", code_map) if f"`{parent}/" in b]
        assert f"`{module}`" in code_map or any(f"`{name}`" in b for b in bullets), f"{module} not in the map"
    named = set(re.findall(r"`(fi_run/[\w/]+\.py)`", code_map))
    assert named <= set(modules), f"the map names modules that do not exist: {named - set(modules)}"


HOW_TO = ROOT / "docs" / "how-to.md"
GNI = ROOT / "examples" / "gn" / "build" / "fi_run.gni"


def gn_template_parameters() -> set[str]:
    """What fi_run_action takes: every invoker variable the template reads or forwards to GN's action."""
    text = GNI.read_text(encoding="utf-8")
    body = text[text.index('template("_fi_run_target")') : text.index('template("fi_run_action")')]
    forwarded = body[body.index("forward_variables_from(invoker,") :].split("]")[0]
    return (set(re.findall(r"invoker\.(\w+)", body)) | set(re.findall(r'"(\w+)"', forwarded))) - {
        "_fi_run_kind"
    }


def test_the_how_to_s_gn_parameter_table_names_every_parameter_of_the_template() -> None:
    text = HOW_TO.read_text(encoding="utf-8")
    rows = text[text.index("| parameter | becomes |") :].split("\n\n")[0].splitlines()[2:]
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row.split(" | ")[0])}
    assert len(gn_template_parameters()) > 15
    assert documented == gn_template_parameters()


def test_the_reference_describes_a_windows_timeout_as_run_windows_does_it() -> None:
    """On Windows --timeout is a polite `taskkill /T`, then TerminateJobObject; `taskkill /F /T` and
    TerminateProcess only without a job (step/run_windows.py). Issue 22: the page said `taskkill /T` stopped
    the tree."""
    code = (ROOT / "fi_run" / "step" / "run_windows.py").read_text(encoding="utf-8")
    stop = code[code.index("def _stop(") : code.index("def run_once(")]
    order = [
        "_taskkill(proc.pid, force=False)",
        "job.terminate()",
        "_taskkill(proc.pid, force=True)",
        "proc.kill()",
    ]
    assert sorted(order, key=stop.index) == order
    grace = re.search(r"^KILL_GRACE_SECONDS = (\d+)\.0\b", code, re.MULTILINE)
    assert grace
    text = " ".join(section("Interrupts and timeouts").split())
    assert "each attempt runs in a job object" in text
    assert (
        "a polite `taskkill /T` (no `/F`: windowed programs get WM_CLOSE, console programs ignore it) and"
        f" waits up to {grace[1]} s for the command; then TerminateJobObject ends everything still in the job"
    ) in text
    assert f"`taskkill /F /T`, then, if the command still runs {grace[1]} s later, TerminateProcess" in text
    assert "`--timeout` stops the tree with `taskkill /T`" not in text


def test_the_windows_jobserver_is_said_to_have_run_under_wine_and_nowhere_else() -> None:
    """Issue 22: the named-semaphore jobserver has run under Wine (ninja.exe, 5 builds, and CI's Windows stage
    since issue 18); the pages said it never ran. They must not claim more either: no real Windows machine."""
    jobserver = " ".join((ROOT / "docs" / "jobserver.md").read_text(encoding="utf-8").split())
    windows = " ".join(section("Windows: what was run where").split())
    for text in (jobserver, windows):
        assert "has run under Wine" in text or "have run under Wine" in text
        assert "not on a real Windows machine" in text or "not run on a real Windows machine" in text
        assert "has not been run on Windows" not in text
    not_run = windows[
        windows.index("What still has not run on Windows at all:") : windows.index(
            "`fi-run jobserver`'s named semaphore and slot lending have run under Wine"
        )
    ]
    assert "jobserver" not in not_run
