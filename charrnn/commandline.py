"""Command lines charrnn prints for a person to run (the resume command, the sample command): each value
quoted so that the shell and then Hydra read back exactly what was written."""

import re
import shlex


def override(key: str, value) -> str:
    """key=value as one command-line word that a shell and then Hydra's override grammar both read back
    as value, whatever characters it holds (spaces, quotes, $, brackets, =)."""
    text = str(value)
    if not re.fullmatch(r"[\w/.~+@%:-]+", text):
        # Hydra's quoted string: a backslash needs escaping only before a quote or at the end; ${ interpolates
        text = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
        text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text).replace("${", "\\${")
        text = f'"{text}"'
    return shlex.quote(f"{key}={text}")
