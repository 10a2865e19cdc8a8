"""Your solution of tinygpt-kata. Fill in each `stepN_*.py` in order; `nox -s check` grades it."""
