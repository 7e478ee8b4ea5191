"""Keep the files of the chosen language and world, remove the others."""

import shutil
from pathlib import Path

LANGUAGE = "{{ cookiecutter.language }}"
WORLD = "{{ cookiecutter.world }}"

root = Path.cwd()
(root / ("app.js" if LANGUAGE == "python" else "app.py")).unlink()
if WORLD == "minimal":  # the db-source and pane WITs use wasmplug:host/http
    shutil.rmtree(root / "wit" / "deps")
