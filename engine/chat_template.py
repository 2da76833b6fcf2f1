"""The chat template: compiled the way HF transformers compiles it (jinja2, sandboxed), and rendered.

The template comes from the model (tokenizer_config.json, chat_template.jinja or GGUF
metadata); `CHATML_TEMPLATE` is the fallback for models with `<|im_start|>` and none.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TokenizerError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def compile_chat_template(source: str) -> jinja2.Template:
    """Compile with the environment HF uses: sandboxed, trim/lstrip blocks, loop controls."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"the chat template does not parse: {exc}") from exc


def render_chat_template(template: jinja2.Template, **variables: Any) -> str:
    """The prompt text of a compiled template; a template that fails raises TokenizerError."""
    try:
        return template.render(**variables)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"chat template failed: {exc}") from exc


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # jinja2's own tojson escapes HTML (<, >, &), which would change the prompt text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)
