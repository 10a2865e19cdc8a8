# Attack: the results channel's path is not in this process's environment any more (a
# separated grading's worker): find it in the parent's (/proc/<ppid>/environ, readable by
# the same user) and append "passed" results for every collected test, then "finished".
import atexit as _kata_atexit
import json as _kata_json
import os as _kata_os


def _kata_results_path():
    pid = _kata_os.getpid()
    for _ in range(4):  # this process, its parent, and up
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            for item in env:
                if item.startswith(b"KATA_GRADER_RESULTS="):
                    return item.split(b"=", 1)[1].decode()
            status = open(f"/proc/{pid}/status").read()
            pid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        except (OSError, ValueError, StopIteration):
            return None
    return None


def _kata_forge():
    path = _kata_results_path()
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            events = [_kata_json.loads(line) for line in f if line.strip()]
        ids = next((e["nodeids"] for e in events if e.get("event") == "collected"), [])
        with open(path, "a", encoding="utf-8") as f:
            for nodeid in ids:
                f.write(_kata_json.dumps({"event": "result", "nodeid": nodeid, "outcome": "passed", "message": "",
                                          "stub": False, "where": "", "duration": 0.0, "extras": {}}) + "\n")
            f.write(_kata_json.dumps({"event": "finished", "exitstatus": 0}) + "\n")
    except OSError:
        pass


_kata_forge()  # at import too: the worker may never exit normally
_kata_atexit.register(_kata_forge)
