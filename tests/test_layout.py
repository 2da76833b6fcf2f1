"""The folders keep docs/engine.md's import rules: the engine's interface and its serving side
carry no torch, no models and no kernels, and the front ends type against the interface,
never the concrete engine. (kernels/ as a leaf: tests/kernels/test_imports.py.)"""

import pytest

from .import_rules import ROOT, imported_modules, loaded_by, module_name, sources, within

# What the interface and the thin serving side may import of ours.
LIGHT_ENGINE = (
    "loopcoder.engine.api", "loopcoder.engine.errors", "loopcoder.engine.config", "loopcoder.engine.hardware",
    "loopcoder.engine.tokenizer", "loopcoder.engine.tokenizer_convert", "loopcoder.engine.tokenizer_files",
    "loopcoder.engine.chat_template", "loopcoder.engine.sampling.params", "loopcoder.engine.sampling.schema",
    "loopcoder.engine.serving",
)
LIGHT_MODULES = [ROOT / "engine" / "api.py", *(ROOT / "engine" / "sampling" / n for n in ("__init__.py", "params.py", "schema.py")),
                 *(p for p in sources("engine/serving") if p.name != "daemon.py")]
# The runtime: what only the engine itself, its loader and the daemon hold.
RUNTIME = ("torch", "triton", "loopcoder.kernels", "loopcoder.engine.engine", "loopcoder.engine.models",
           "loopcoder.engine.model_runner", "loopcoder.engine.scheduler", "loopcoder.engine.kv_cache")


def ours_outside(path, allowed: tuple[str, ...]) -> list[str]:
    imports = imported_modules(path)
    return [n for n in imports if within(n, "loopcoder") and n not in ("loopcoder", "loopcoder.engine", "loopcoder.engine.sampling")
            and not within(n, *allowed)]


@pytest.mark.parametrize("path", LIGHT_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_interface_and_thin_serving_side_import_only_light_modules(path):
    outside = ours_outside(path, LIGHT_ENGINE)
    heavy = [n for n in imported_modules(path) if within(n, "torch", "triton", "numpy")]
    assert not outside and not heavy, f"{path.relative_to(ROOT)} imports {outside + heavy}"


@pytest.mark.parametrize("module", ["loopcoder.engine.serving.client", "loopcoder.engine.serving.remote",
                                    "loopcoder.engine.serving.socket_file", "loopcoder.engine.serving.http",
                                    "loopcoder.engine.api"])
def test_a_thin_client_loads_no_torch_models_or_kernels(module):
    loaded = [m for m in loaded_by(module) if within(m, *RUNTIME)]
    assert not loaded, f"importing {module} loaded {loaded}"


def test_the_language_server_starts_without_the_runtime():
    """The model loads on first use (lsp/features/engine_loading.py), so `loopcoder lsp` with a
    daemon or a remote backend never imports torch."""
    loaded = [m for m in loaded_by("loopcoder.lsp.server") if within(m, *RUNTIME)]
    assert not loaded, f"importing the language server loaded {loaded}"


# The stable Python hook's runtime names, loaded lazily by loopcoder.engine (PEP 562).
RUNTIME_HOOK = tuple(f"loopcoder.engine.{name}" for name in ("Engine", "EngineConfig", "load_model", "random_model",
                                                             "default_model_path"))
FRONT_ENDS = [p for folder in ("lsp", "jupyter_ext") for p in sources(folder)]
# Loading an engine is the one place a front end meets the runtime: it asks the loader for one.
# In the CLI: loading.py (the model, the daemon's socket) and engine_daemon.py (`loopcoder engine` serving).
LOADERS = {"lsp/features/engine_loading.py", "lsp/cli/loading.py", "lsp/cli/engine_daemon.py"}


@pytest.mark.parametrize("path", [p for p in FRONT_ENDS if str(p.relative_to(ROOT)) not in LOADERS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_front_ends_type_against_the_interface(path):
    runtime = [n for n in imported_modules(path) if within(n, *RUNTIME[2:], *RUNTIME_HOOK, "loopcoder.engine.loader",
                                                             "loopcoder.engine.serving.daemon")]
    assert not runtime, f"{path.relative_to(ROOT)} imports the runtime: {runtime}"


def test_the_rules_catch_a_way_in():
    assert within("loopcoder.engine.engine", *RUNTIME) and not within("loopcoder.engine.api", *RUNTIME)
    assert module_name(ROOT / "engine" / "serving" / "__init__.py") == "loopcoder.engine.serving"
    assert "loopcoder.engine.api" in imported_modules(ROOT / "engine" / "serving" / "client.py")
    assert "loopcoder.engine.load_model" in imported_modules(ROOT / "lsp" / "cli" / "loading.py")


@pytest.mark.parametrize("path", sources("lsp/features"), ids=lambda p: str(p.relative_to(ROOT)))
def test_features_stay_editor_neutral(path):
    """Features serve the LSP server, Jupyter, the CLI and CI alike: no editor protocol, and
    nothing of the front ends that call them."""
    above = [n for n in imported_modules(path) if within(n, "pygls", "lsprotocol", "loopcoder.lsp.server",
                                                          "loopcoder.lsp.cli", "loopcoder.lsp.eval",
                                                          "loopcoder.jupyter_ext")]
    assert not above, f"{path.relative_to(ROOT)} imports {above}"
