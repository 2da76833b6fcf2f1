"""JupyterLab cell assistance (jupyter-server extension); see the JupyterLab issue."""
