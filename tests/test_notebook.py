"""notebooks/tour.ipynb runs top to bottom in a real Jupyter kernel (nbclient with ipykernel):
on the tiny synthetic files every time, on the real copy when CIFAR10_DIR is set."""
import os
import re

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = os.path.join(ROOT, 'notebooks', 'tour.ipynb')


def execute(data_dir, steps, monkeypatch):
    """Run a copy of the notebook in a fresh kernel, in its own folder as Jupyter would; a failing
    cell raises CellExecutionError with its traceback. Returns the executed notebook."""
    monkeypatch.setenv('CIFAR10_DIR', data_dir)
    monkeypatch.setenv('TOUR_STEPS', str(steps))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}).execute()
    return notebook


def outputs_of(notebook):
    return [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs]


def printed(notebook):
    return ''.join(output.get('text', '') for output in outputs_of(notebook) if output.output_type == 'stream')


def test_the_tour_runs_on_synthetic_data(fake_cifar_dir, monkeypatch):
    notebook = execute(fake_cifar_dir, 30, monkeypatch)
    assert not [output for output in outputs_of(notebook) if output.output_type == 'error']
    figures = [output for output in outputs_of(notebook) if 'image/png' in output.get('data', {})]
    assert len(figures) == 4  # sample images, NumPy MLP curves, confusion matrix, recorded runs
    text = printed(notebook)
    errors = [float(value) for value in re.findall(r'(?:dX|dW|relative error) ([0-9.e+-]+)', text)]
    assert len(errors) == 3 and max(errors) < 1e-7  # the gradient checks the tour prints
    assert 'final test accuracy' in text and '9,231,114 parameters' in text


@pytest.mark.slow
def test_the_tour_runs_on_the_real_copy(real_cifar, real_cifar_dir, monkeypatch):
    notebook = execute(real_cifar_dir, 100, monkeypatch)
    assert not [output for output in outputs_of(notebook) if output.output_type == 'error']
    # the notebook names the copy it read, as the loader fingerprinted it
    assert f"official release: {real_cifar.source['official']} | fingerprint {real_cifar.source['fingerprint']}" \
        in printed(notebook)


def test_a_missing_data_folder_stops_the_tour_in_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError) as stopped:
        execute(str(tmp_path / 'no_such_folder'), 30, monkeypatch)
    assert stopped.value.ename == 'SystemExit'
    assert stopped.value.evalue.startswith(f"CIFAR10_DIR is '{tmp_path / 'no_such_folder'}', which is no folder: set it")
    assert not (tmp_path / 'no_such_folder').exists()  # nothing created, nothing downloaded
