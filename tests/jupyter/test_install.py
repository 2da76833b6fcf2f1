"""What `pip install` puts in place: the server extension's entry point, the file that enables it,
and the prebuilt front end (`make labextension` builds it before the tests run)."""

import glob
import json
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_extension_points_name_the_app_and_the_front_end():
    from loopcoder import jupyter_ext
    from loopcoder.jupyter_ext.app import LoopcoderExtension

    (point,) = jupyter_ext._jupyter_server_extension_points()
    assert point == {"module": "loopcoder.jupyter_ext", "app": LoopcoderExtension}
    (lab,) = jupyter_ext._jupyter_labextension_paths()
    assert lab["dest"] == "loopcoder-jupyterlab"


def test_the_config_file_enables_the_server_extension():
    config = json.loads((ROOT / "jupyter-config" / "jupyter_server_config.d" / "loopcoder.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"loopcoder.jupyter_ext": True}


def test_every_data_file_the_wheel_ships_exists():
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    if not (ROOT / "jupyter_ext" / "labextension" / "package.json").is_file():
        pytest.fail("the front end is not built: run `make labextension`")
    for target, patterns in data_files.items():
        for pattern in patterns:
            assert glob.glob(str(ROOT / pattern)), f"{target}: nothing matches {pattern}"
    built = json.loads((ROOT / "jupyter_ext" / "labextension" / "package.json").read_text())
    assert built["name"] == "loopcoder-jupyterlab" and built["jupyterlab"]["_build"]["load"]
