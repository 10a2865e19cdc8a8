# Attack: at exit, append a "passed" result for every collected test to the grader's
# results channel (the JSON-lines file named in the environment), then "finished".
import atexit as _kata_atexit
import json as _kata_json
import os as _kata_os


def _kata_forge():
    path = _kata_os.environ.get("KATA_GRADER_RESULTS")
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        events = [_kata_json.loads(line) for line in f if line.strip()]
    ids = next((e["nodeids"] for e in events if e.get("event") == "collected"), [])
    with open(path, "a", encoding="utf-8") as f:
        for nodeid in ids:
            f.write(_kata_json.dumps({"event": "result", "nodeid": nodeid, "outcome": "passed", "message": "",
                                      "stub": False, "where": "", "duration": 0.0, "extras": {}}) + "\n")
        f.write(_kata_json.dumps({"event": "finished", "exitstatus": 0}) + "\n")


_kata_atexit.register(_kata_forge)
