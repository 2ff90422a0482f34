#!/usr/bin/env python3
"""Counts gtest results from the test.xml files Bazel keeps per test target.

usage: count_results.py TESTLOGS_DIR LABEL... > counts
Prints one line "passed failed skipped" for the given test targets. A target
whose test.xml is missing counts as one failure: it did not report.
"""

import os
import sys
import xml.etree.ElementTree as ET


def count(xml_path):
    passed = failed = skipped = 0
    root = ET.parse(xml_path).getroot()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.get("result") == "skipped" or case.find("skipped") is not None \
                or case.get("status") == "notrun":
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main():
    testlogs = sys.argv[1]
    totals = [0, 0, 0]
    for label in sys.argv[2:]:
        package, _, name = label.lstrip("/").partition(":")
        xml_path = os.path.join(testlogs, package, name, "test.xml")
        try:
            result = count(xml_path)
        except (OSError, ET.ParseError) as e:
            print(f"{label}: no readable test.xml ({e})", file=sys.stderr)
            result = (0, 1, 0)
        for i, n in enumerate(result):
            totals[i] += n
    print(*totals)


if __name__ == "__main__":
    main()
