#!/usr/bin/env python3
"""Writes mutants/RESULTS.md from each module's cargo-mutants outcomes.json (mutants/run.sh).

Modules that were not run are left out. A missed mutant (or a timeout) is listed with its
reason from mutants/equivalent.tsv when it has one: `<file>: <mutation><TAB><reason>`, the
mutant's name without its line and column, so that the reason survives edits elsewhere in the
file; `#` starts a comment line.
"""

import datetime
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "mutants.out"
MODULES = ["lb", "sticky", "health", "state", "router", "config"]
# The modules held to the goal: at least this share of viable mutants caught, and every miss
# explained in equivalent.tsv.
GOAL = {"lb", "sticky", "health", "state"}
GOAL_SHARE = 0.90
KINDS = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Unviable": "unviable",
    "Timeout": "timeout",
}


def key(name):
    """`src/x.rs:12:5: replace ...` -> `src/x.rs: replace ...`."""
    return re.sub(r"^([^:]+):\d+:\d+:", r"\1:", name)


def reasons():
    out = {}
    path = ROOT / "mutants" / "equivalent.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.partition("\t")
                out[name.strip()] = reason.strip()
    return out


def read_or(path, default):
    return path.read_text().strip() if path.exists() else default


def mutant_outcomes(data):
    """name -> (summary, mutant) for every mutant of one outcomes.json (not the baseline)."""
    out = {}
    for o in data["outcomes"]:
        scenario = o["scenario"]
        if isinstance(scenario, dict):
            out[scenario["Mutant"]["name"]] = (o["summary"], scenario["Mutant"])
    return out


def module_results(module):
    path = OUT / module / "mutants.out" / "outcomes.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    outcomes = mutant_outcomes(data)
    # An --iterate run tests only what was not caught before: the rest keeps its outcome from
    # the run before (mutants.out.old), listed in previously_caught.txt.
    previous = path.parent / "previously_caught.txt"
    if previous.exists():
        old_path = path.parent.parent / "mutants.out.old" / "outcomes.json"
        old = mutant_outcomes(json.loads(old_path.read_text())) if old_path.exists() else {}
        for name in previous.read_text().splitlines():
            if name and name not in outcomes:
                # Caught or unviable before; an older iteration's are counted as caught.
                outcomes[name] = old.get(name, ("CaughtMutant", {"name": name, "file": name.split(":")[0]}))
    counts = {kind: 0 for kind in KINDS.values()}
    per_file = {}
    unresolved = []
    for summary, mutant in outcomes.values():
        kind = KINDS.get(summary, "failure")
        counts[kind] = counts.get(kind, 0) + 1
        file_counts = per_file.setdefault(mutant["file"], {k: 0 for k in KINDS.values()})
        file_counts[kind] = file_counts.get(kind, 0) + 1
        if kind in ("missed", "timeout"):
            unresolved.append((kind, mutant["name"]))
    command_file = OUT / module / "command"
    return {
        "counts": counts,
        "per_file": per_file,
        "unresolved": unresolved,
        "version": data.get("cargo_mutants_version", "?"),
        "date": (data.get("start_time") or "?")[:10],
        "tree": read_or(OUT / module / "tree", "?"),
        "command": command_file.read_text().strip() if command_file.exists() else "?",
    }


def share(c):
    viable = c["caught"] + c["missed"] + c["timeout"]
    return c["caught"] / viable if viable else 1.0


def detected(c):
    """Caught or timed out (an endless loop: the tests never pass either)."""
    viable = c["caught"] + c["missed"] + c["timeout"]
    return (c["caught"] + c["timeout"]) / viable if viable else 1.0


def row(name, c):
    viable = c["caught"] + c["missed"] + c["timeout"]
    return (
        f"| {name} | {sum(c.values())} | {c['caught']} | {c['missed']} | {c['unviable']} "
        f"| {c['timeout']} | {100 * share(c):.1f}% ({c['caught']}/{viable}) "
        f"| {100 * detected(c):.1f}% |"
    )


def main():
    results = {m: r for m in MODULES if (r := module_results(m))}
    why = reasons()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    versions = sorted({r["version"] for r in results.values()})
    header = (
        "| module | mutants | caught | missed | unviable | timeouts | caught / viable "
        "| (caught + timeouts) / viable |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    lines = [
        "# Mutation testing results",
        "",
        "Written by `mutants/results.py` from `mutants.out/*/mutants.out/outcomes.json` "
        "(`make mutants`, or `bash mutants/run.sh <module>...`); do not edit by hand: "
        "reasons for mutants that no test can catch go in `mutants/equivalent.tsv`.",
        "",
        f"- Written: {today} (UTC)",
        f"- cargo-mutants: {', '.join(versions) or '-'}",
        f"- Modules run: {', '.join(results) or 'none'}"
        + (f"; not run: {', '.join(m for m in MODULES if m not in results)}"
           if len(results) < len(MODULES) else ""),
        "- Each module's mutants are tested by the unit tests whose path names it "
        "(`cargo test --lib <module>::`). Viable = caught + missed + timeouts; "
        f"goal for {', '.join(sorted(GOAL))}: at least {GOAL_SHARE:.0%} caught, every miss "
        "explained below.",
        "",
        "## Per module",
        "",
        "| module | run on | commit " + header.removeprefix("| module "),
        "|---|---|---" + rule.removeprefix("|---"),
    ]
    for m, r in results.items():
        lines.append(row(f"{m} | {r['date']} | {r['tree']}", r["counts"]))
    lines += [
        "",
        "## Commands",
        "",
        "Each module's last run (an `--iterate` run retests only what the run before it left "
        "uncaught; the counts above merge both).",
        "",
    ]
    for m, r in results.items():
        lines.append(f"- {m}: `{r['command']}`")
    lines += ["", "## Per file", "", header.replace("module", "file"), rule]
    for r in results.values():
        for f, c in sorted(r["per_file"].items()):
            lines.append(row(f"`{f}`", c))
    lines += ["", "## Missed and timed out", ""]
    unexplained = 0
    for m, r in results.items():
        if not r["unresolved"]:
            continue
        lines += [f"### {m}", ""]
        for kind, name in sorted(r["unresolved"], key=lambda u: u[1]):
            reason = why.get(key(name))
            if reason is None:
                reason = "UNEXPLAINED" if m in GOAL else "not reviewed"
                unexplained += m in GOAL
            tag = " (timeout)" if kind == "timeout" else ""
            lines.append(f"- `{name}`{tag}: {reason}")
        lines.append("")
    run = [m for m in results if m in GOAL]
    below = [m for m in run if share(results[m]["counts"]) < GOAL_SHARE]
    below_detected = [m for m in run if detected(results[m]["counts"]) < GOAL_SHARE]
    lines += [
        "## Goal",
        "",
        f"- Caught >= {GOAL_SHARE:.0%} of viable: "
        + (f"NO for {', '.join(below)}" if below else "yes, every goal module run"),
        f"- Caught or timed out >= {GOAL_SHARE:.0%} of viable: "
        + (f"NO for {', '.join(below_detected)}" if below_detected else "yes, every goal module run"),
        f"- Unexplained misses in goal modules: {unexplained}",
        "",
    ]
    (ROOT / "mutants" / "RESULTS.md").write_text("\n".join(lines))
    print(f"mutants/RESULTS.md: {len(results)} modules, {unexplained} unexplained misses")


if __name__ == "__main__":
    main()
