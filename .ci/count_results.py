#!/usr/bin/env python3
"""Counts gtest results from the test.xml files Bazel keeps per test target.

usage: count_results.py TESTLOGS_DIR LABEL... > counts
Prints one line "passed failed skipped" for the given test targets. A target
whose test.xml is missing counts as one failure: it did not report. A
sharded target (shard_count) keeps one test.xml per shard, in
shard_<i>_of_<n>/; every shard must have reported.
"""

import os
import re
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
        target_dir = os.path.join(testlogs, package, name)
        xml_paths = [os.path.join(target_dir, "test.xml")]
        if not os.path.exists(xml_paths[0]) and os.path.isdir(target_dir):
            shards = sorted(d for d in os.listdir(target_dir)
                            if re.fullmatch(r"shard_\d+_of_\d+", d))
            if shards:
                expected = int(shards[0].rsplit("_", 1)[1])
                xml_paths = [os.path.join(target_dir, f"shard_{i}_of_{expected}", "test.xml")
                             for i in range(1, expected + 1)]
        for xml_path in xml_paths:
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
