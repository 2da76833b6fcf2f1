"""JupyterLab cell assistance: a jupyter-server extension (`app`, `handlers`) and its
prebuilt JupyterLab front end (`labextension/`, built from `labextension-src/`)."""


def _jupyter_server_extension_points() -> list[dict]:
    from .app import LoopcoderExtension

    return [{"module": "loopcoder.jupyter_ext", "app": LoopcoderExtension}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "loopcoder-jupyterlab"}]
