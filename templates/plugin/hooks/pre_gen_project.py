"""Refuse plugin names that are not valid WIT / manifest names (kebab-case)."""

import re
import sys

NAME = "{{ cookiecutter.plugin_name }}"
NAMESPACE = "{{ cookiecutter.namespace }}"
ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")

for what, value in (("plugin name", NAME), ("namespace", NAMESPACE)):
    if not ID.match(value):
        print(f"error: {what} {value!r} must be kebab-case: lowercase words joined by '-', "
              "each starting with a letter (e.g. word-count)", file=sys.stderr)
        sys.exit(1)
