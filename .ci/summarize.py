"""Turn trial's closing lines into 'N passed, N failed' and exit with the verdict."""

import re
import sys


def main(log_path: str, status: str) -> int:
    text = open(log_path, encoding="utf-8", errors="replace").read()
    counts = {}
    for match in re.finditer(r"^(PASSED|FAILED) \((.*)\)\s*$", text, re.M):
        counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2)))
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    if int(status) != 0 and failed == 0:
        failed = 1
    skipped = counts.get("skips", 0)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and int(status) == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
