"""The free-GPU notebook (notebooks/tinygpt_kata_gpu.py, jupytext percent format).

The `.py` is the source; the `.ipynb` beside it (what Colab and Kaggle open) must be its
jupytext conversion. The notebook itself runs here offline on the CPU with its
parameters switched to the test's: no install, the reference solution, one graded step,
a tiny 6-step run (the `TINY` parameter), as papermill would inject them.
"""
from __future__ import annotations

import sys

import pytest

from kata.paths import REPO_ROOT

pytestmark = [pytest.mark.infra, pytest.mark.needs_reference]

jupytext = pytest.importorskip("jupytext", reason="the test extra (pip install -e .[test]) brings jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SOURCE = REPO_ROOT / "notebooks" / "tinygpt_kata_gpu.py"
REGENERATE = f"nox -s notebook (or: jupytext --to ipynb {SOURCE.relative_to(REPO_ROOT)})"


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_notebook_ipynb_is_the_jupytext_conversion_of_its_py_source():
    ipynb = SOURCE.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.relative_to(REPO_ROOT)} is missing: generate it with `{REGENERATE}`"
    want, got = _cells(jupytext.read(SOURCE)), _cells(nbformat.read(ipynb, as_version=4))
    assert got == want, (
        f"{ipynb.name} differs from {SOURCE.name} (its source): "
        f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))} is the first "
        f"differing cell; regenerate it with `{REGENERATE}` and commit both"
    )
    for c in nbformat.read(ipynb, as_version=4).cells:
        assert not c.get("outputs"), f"{ipynb.name} is committed with outputs: regenerate it with `{REGENERATE}`"


def _outputs(nb) -> tuple[str, list[str]]:
    text, mimes = [], []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                text.append(o.get("text", ""))
            mimes += list(o.get("data", {}))
            if "text/plain" in o.get("data", {}):
                text.append(o["data"]["text/plain"])
    return "".join(text), mimes


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~60-90 s on 2 idle cores: kernel start, imports, tokenising, 6 steps
def test_notebook_runs_offline_on_the_cpu_with_the_tiny_parameters(tmp_path, monkeypatch):
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(k, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    nb = jupytext.read(SOURCE)
    at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    assert at is not None, f"{SOURCE.name} has no cell tagged `parameters` (the test switches the run there)"
    check = f"{sys.executable} -m grader --solution reference --step 1 --no-bonus --no-cache"
    params = (f"INSTALL = False\nKATA_DIR = {str(REPO_ROOT)!r}\nSOLUTION = 'reference'\n"
              f"CHECK_COMMAND = {check!r}\nTINY = True\nOUT_DIR = {str(tmp_path / 'run')!r}\n")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(params, metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{SOURCE.name} failed in a cell (offline, CPU, TINY):\n{str(e)[-3000:]}", pytrace=False)
    text, mimes = _outputs(nb)
    assert "precision: fp32" in text, f"the notebook should print the device's precision (fp32 on a CPU); got:\n{text[-1500:]}"
    assert "step 1" in text.lower(), f"the grade cell printed no grade table for step 1; got:\n{text[:1500]}"
    assert "image/png" in mimes, f"the notebook showed no loss plot (image/png output); outputs: {sorted(set(mimes))}"
    assert "=== The history of" in text, f"the notebook printed no sample; got:\n{text[-1500:]}"
    assert (tmp_path / "run" / "summary.json").exists(), "the run wrote no summary.json into OUT_DIR"
