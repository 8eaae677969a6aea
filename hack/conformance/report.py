#!/usr/bin/env python3
"""Reads the JUnit reports of one e2e.test run and prints the conformance table.

    report.py REPORT_DIR --scope REGEX [--expected FILE] [--write-passed FILE]

Only test cases whose name matches --scope count (the suite's JUnit lists every test
it knows, skipped or not). Prints passed / failed / skipped, then by SIG, then the
failures grouped by the feature they need, with their names. With --expected, exits 1
when a test named in FILE did not pass (a regression); tests that pass but are not in
FILE are listed as new passes, to add on purpose. Failures are data: without
--expected the exit code is 0 whatever failed.
"""

import argparse
import collections
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

# The feature a failing test needs, judged from its name and failure message, first
# match wins. Ordered from the most specific to the most general.
FEATURES = [
    ("images", r"ErrImagePull|ImagePullBackOff|image .* not found|failed to pull"),
    ("exec", r"\bexec\b|ExecWithOptions|/exec\?|error dialing backend|upgrade request"),
    ("port-forward", r"port-?forward"),
    ("attach", r"\battach\b"),
    ("DNS", r"\bDNS\b|dns|resolv\.conf|/etc/hosts|hostAliases"),
    ("services", r"[Ss]ervice|[Ee]ndpoint|kube-proxy|proxy"),
    ("volumes", r"ConfigMap|[Ss]ecret|[Pp]rojected|EmptyDir|emptydir|Downward API|[Vv]olume|[Ss]ubpath|hostPath"),
    ("init containers", r"[Ii]nit[Cc]ontainer|init container"),
    ("lifecycle hooks", r"[Ll]ifecycle [Hh]ook|preStop|postStart|prestop|poststart"),
    ("security context", r"[Ss]ecurity [Cc]ontext|runAsUser|runAsNonRoot|privileged|[Cc]apabilit|readOnlyRootFilesystem|[Ss]ysctl"),
    ("probes", r"[Pp]robe|liveness|readiness"),
    ("resources", r"[Rr]esource|[Ll]imit|QOS|qosClass|LimitRange|ResourceQuota"),
    ("networking", r"[Nn]etwork|hostNetwork|hostPort|connectivity"),
    ("kubectl", r"[Kk]ubectl"),
    ("apps controllers", r"Deployment|ReplicaSet|ReplicationController|StatefulSet|DaemonSet|\bJob\b|CronJob"),
    ("scheduling", r"sig-scheduling|[Ss]chedul|[Pp]reempt|[Tt]aint"),
    ("pod status", r"[Pp]od|[Cc]ontainer"),
]


def feature_of(name, message):
    text = name + "\n" + message
    for feature, pattern in FEATURES:
        if re.search(pattern, text):
            return feature
    return "other"


def sig_of(name):
    m = re.search(r"\[sig-([a-z-]+)\]", name)
    return "sig-" + m.group(1) if m else "(no sig)"


def read_cases_from_log(log):
    """The suite's progress lines ({"msg":"PASSED name",...}), for a run cut short before the
    JUnit reports were written: tests that never finished are absent, not skipped."""
    cases = {}
    with open(log, errors="replace") as f:
        for line in f:
            if not line.startswith('{"msg":"'):
                continue
            try:
                msg = json.loads(line)["msg"]
            except (ValueError, KeyError):
                continue
            state, _, name = msg.partition(" ")
            if state in ("PASSED", "FAILED"):
                cases[" ".join(name.split())] = (state.lower(), "")
    return cases


def read_cases(report_dir):
    files = sorted(glob.glob(os.path.join(report_dir, "junit*.xml")))
    log = os.path.join(report_dir, "e2e.log")
    if not files and os.path.exists(log):
        print(f"report: no JUnit in {report_dir}: counting the progress lines of e2e.log (a run cut short)")
        return read_cases_from_log(log)
    if not files:
        sys.exit(f"report: no junit*.xml in {report_dir} (did e2e.test run with --report-dir?)")
    cases = {}
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as e:
            sys.exit(f"report: {f} is not valid JUnit XML: {e}")
        for tc in root.iter("testcase"):
            name = " ".join(tc.get("name", "").split())
            if not name:
                continue
            failure = tc.find("failure")
            if failure is None:
                failure = tc.find("error")
            if failure is not None:
                state = "failed"
                msg = (failure.get("message") or "") + "\n" + (failure.text or "")
            elif tc.find("skipped") is not None:
                state, msg = "skipped", ""
            else:
                state, msg = "passed", ""
            # Parallel nodes each write a report; a test that ran anywhere wins over "skipped".
            if name not in cases or cases[name][0] == "skipped":
                cases[name] = (state, msg)
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--scope", required=True, help="regex a test name must match to count")
    ap.add_argument("--expected", help="file of test names that must pass (one per line, # comments)")
    ap.add_argument("--write-passed", help="write the names of the passing tests to this file")
    ap.add_argument("--title", default="Conformance")
    args = ap.parse_args()

    scope = re.compile(args.scope)
    cases = {n: v for n, v in read_cases(args.report_dir).items() if scope.search(n)}
    by_state = collections.defaultdict(list)
    for name, (state, _) in cases.items():
        by_state[state].append(name)
    passed, failed, skipped = (sorted(by_state[s]) for s in ("passed", "failed", "skipped"))

    print(f"\n## {args.title}: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped "
          f"(of {len(cases)} in scope)\n")
    print("| SIG | passed | failed | skipped |\n|---|---|---|---|")
    sigs = collections.defaultdict(collections.Counter)
    for name, (state, _) in cases.items():
        sigs[sig_of(name)][state] += 1
    for sig in sorted(sigs):
        c = sigs[sig]
        print(f"| {sig} | {c['passed']} | {c['failed']} | {c['skipped']} |")

    if failed:
        print("\n### Failures by the feature they need\n")
        groups = collections.defaultdict(list)
        for name in failed:
            groups[feature_of(name, cases[name][1])].append(name)
        for feature in sorted(groups, key=lambda f: (-len(groups[f]), f)):
            print(f"- **{feature}** ({len(groups[feature])})")
            for name in groups[feature]:
                print(f"  - {name}")
    if passed:
        print("\n### Passed\n")
        for name in passed:
            print(f"- {name}")

    if args.write_passed:
        with open(args.write_passed, "w") as f:
            f.write("".join(n + "\n" for n in passed))

    rc = 0
    if args.expected:
        with open(args.expected) as f:
            expected = [" ".join(l.split()) for l in f if l.strip() and not l.startswith("#")]
        regressed = [n for n in expected if cases.get(n, ("missing",))[0] != "passed"]
        new = [n for n in passed if n not in set(expected)]
        if new:
            print(f"\n{len(new)} test(s) pass that {args.expected} does not list (add them on purpose):")
            for n in new:
                print(f"  + {n}")
        if regressed:
            print(f"\nREGRESSION: {len(regressed)} expected pass(es) did not pass:")
            for n in regressed:
                state = cases.get(n, ("not run",))[0]
                print(f"  - [{state}] {n}")
            rc = 1
        else:
            print(f"\nall {len(expected)} expected passes passed")
    # The plain closing line.
    print(f"\nconformance: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
