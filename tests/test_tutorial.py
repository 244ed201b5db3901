"""docs/tutorial.ipynb runs top to bottom, draws its figures and computes what its text claims.

The notebook runs once per module in a fresh kernel, with a temporary working directory (its
training run writes there) and this checkout's ``src`` first on the kernel's path.
"""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
FIGURES = 4  # the photo panels, the fitted segmenter, the loss curve, the decomposition


def _outputs(nb: Any) -> list[Any]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _images(nb: Any) -> int:
    return sum("image/png" in out.get("data", {}) for out in _outputs(nb))


def _result(nb: Any, tag: str) -> str:
    """The text of the execute result of the code cell tagged ``tag``."""
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    (result,) = [out for out in cell.outputs if out.output_type == "execute_result"]
    return result.data["text/plain"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    workdir = tmp_path_factory.mktemp("tutorial")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    # One thread: the kernel must not compete with the test processes for the CPU.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)  # raises CellExecutionError, with the cell and traceback, if a cell fails
    return nb, workdir


def test_committed_notebook_carries_its_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "save the notebook executed"
    assert _images(nb) == FIGURES


def test_notebook_runs_and_draws_its_figures(executed: tuple[Any, Path]) -> None:
    nb, _ = executed
    assert not [out for out in _outputs(nb) if out.output_type == "error"]
    assert _images(nb) == FIGURES


def test_max_flow_is_the_cheapest_cut_and_irls_closes_most_of_the_gap(executed: tuple[Any, Path]) -> None:
    energies = ast.literal_eval(_result(executed[0], "energies"))
    min_cut = energies.pop("max-flow")
    assert min(energies.values()) >= min_cut * (1 - 1e-9)  # every segmentation is a cut of the graph
    walker, irls = energies["random walker, x > 1/2"], energies["IRLS, x > 1/2"]
    assert irls - min_cut < 0.5 * (walker - min_cut)


def test_adjoint_gradient_passes_gradcheck(executed: tuple[Any, Path]) -> None:
    assert _result(executed[0], "gradcheck") == "True"


def test_tiny_discovery_model_trains(executed: tuple[Any, Path]) -> None:
    with (executed[1] / "runs" / "tutorial" / "scalars.csv").open(newline="") as fh:
        losses = [float(row["value"]) for row in csv.DictReader(fh) if row["name"] == "train/loss"]
    assert len(losses) >= 10
    assert losses[-1] < 0.7 * losses[0]
