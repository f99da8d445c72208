"""The install a Colab cell does, without the repository: build the wheel, install it into a fresh virtual
environment, and from a folder outside the repository run ``vp2p demo`` and notebook 00 on the toy model — which
must therefore come with the package, as must every data file the package reads (the overview: the shortest
notebook that loads the model, samples, edits and reads the evaluator; 01 took two minutes more of CI).

The fresh environment borrows the dependencies (torch, diffusers, …) of the one running the tests through a
``.pth`` line instead of downloading them again (a CPU build of torch is 200 MB); only its own site-packages holds
vp2p, and only from the wheel (an editable install's finder is not carried over: ``.pth`` files of a borrowed
folder are not read). ``-m "not wheel"`` leaves this out.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.wheel


def run(command, cwd, timeout=600, env=None):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], cwd=out)
    (path,) = out.glob("vp2p-*.whl")
    return path


def package_data_files() -> set[str]:
    """Every file of the package that is not Python source, as tracked by git (what a checkout has)."""
    listed = run(["git", "ls-files", "vp2p"], cwd=ROOT).split()
    return {name for name in listed if not name.endswith(".py")}


def test_the_wheel_holds_every_data_file_of_the_package(wheel):
    data = package_data_files()
    assert any(name.endswith(".safetensors") for name in data)  # the toy model's weights are among them
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(data - names)
    assert not missing, f"the wheel lacks {missing}: add them to [tool.setuptools.package-data] in pyproject.toml"


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(folder)], cwd=folder)
    python = folder / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=folder)
                .strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=folder)
    return folder


def clean_env(home: Path) -> dict:
    """No PYTHONPATH (it could point at the checkout), a home of its own, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VP2P_MODEL", "VP2P_SETTINGS")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), HF_HUB_OFFLINE="1",
               VP2P_COURSE_OUTPUT=str(home / "course"))
    return env


def test_demo_and_a_notebook_run_from_the_installed_wheel(venv, tmp_path):
    work = tmp_path / "colab"  # like /content: no repository in sight
    work.mkdir()
    env = clean_env(tmp_path)
    python = venv / "bin" / "python"
    where = run([str(python), "-c", "import vp2p; print(vp2p.__file__)"], cwd=work, env=env).strip()
    assert where.startswith(str(venv)), f"vp2p was imported from {where}, not from the installed wheel"

    run([str(venv / "bin" / "vp2p"), "demo", "--out", "demo"], cwd=work, env=env)
    assert any((work / "demo").iterdir()), "vp2p demo wrote nothing"

    notebook = work / "00_overview.ipynb"
    notebook.write_bytes((ROOT / "notebooks" / "00_overview.ipynb").read_bytes())
    runner = textwrap.dedent(f"""
        import nbformat, vp2p
        from nbclient import NotebookClient
        nb = nbformat.read({str(notebook)!r}, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3").execute()
        printed = [out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])]
        print("".join(printed))
    """)
    printed = run([str(python), "-c", runner], cwd=work, env=env)
    assert "toy on cpu: frames of 64×64 pixels" in printed  # the setup line: the bundled toy model, from the wheel
    assert "this notebook ran in" in printed  # its last cell
