"""Keep the built book self-contained: every script it loads is served from its own ``_static``.

* MathJax 3 comes from the ``sphinx-mathjax-offline`` package (listed in
  ``requirements.txt``), which copies it into ``_static/mathjax``.
* require.js and the ipywidgets HTML manager come from npm packages that
  ``make assets`` unpacks into ``_build/assets`` (an ``html_static_path`` entry);
  ``nb_ipywidgets_js`` in ``_config.yml`` names them. Before any page is read, this
  extension checks that every local file named there exists, so a build without
  them stops with the fix instead of publishing pages whose widgets cannot load.
* ``static/widgets_offline.js`` (beside this file, loaded just before the HTML
  manager) points the manager at its fonts in ``_static/html-manager/`` and lets
  it typeset widget labels with MathJax 3: the manager calls MathJax 2's
  ``MathJax.Hub.Queue``.
* Sphinx 7.4 includes an inline script twice when an extension adds it after the
  builder has started: the builder stores it with the file name ``None``, and
  re-adds it from the registry with ``""`` before writing, so the two copies do
  not compare equal. A page then declares the same ``const`` twice and the
  browser reports a SyntaxError. The builder's copies are renamed ``""`` once
  the sources are read, so the second addition finds them and adds nothing.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

STATIC = Path(__file__).parent / "static"


def add_static_path(app: Sphinx, config) -> None:
    """Serve ``static/`` beside this module from the book's ``_static``."""
    config.html_static_path.append(str(STATIC))


def check_widget_scripts(app: Sphinx) -> None:
    """Every local script of ``nb_ipywidgets_js`` must be in one of the static folders."""
    if app.builder is None or app.builder.format != "html":
        return
    folders = [Path(app.confdir, p) for p in app.config.html_static_path]
    for script in app.config.nb_ipywidgets_js:
        if "://" in script:
            raise ConfigError(f"nb_ipywidgets_js names {script!r}, a remote script: the book must work offline; "
                              "name a file of the static folders instead")
        if not any((folder / script).is_file() for folder in folders):
            raise ConfigError(f"widget script {script!r} not found in {[str(f) for f in folders]}: "
                              "run `make assets` (it unpacks the npm packages into _build/assets)")


def name_inline_scripts(app: Sphinx, env) -> None:
    """Give the builder's inline scripts the file name ``""`` that the registry's copies get."""
    files = getattr(app.builder, "_js_files", None)
    if files is None:
        return
    kept = []
    for js in files:
        if js.filename is None:
            js = type(js)("", priority=js.priority, **js.attributes)
        if js not in kept:
            kept.append(js)
    files[:] = kept


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", add_static_path)
    app.connect("builder-inited", check_widget_scripts)
    app.connect("env-updated", name_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
