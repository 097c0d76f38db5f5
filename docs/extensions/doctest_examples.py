"""A griffe extension for the API reference (`mkdocs.yml` loads it).

tfprune's docstrings end with an `Example:` line followed by doctests and code blocks that
are not indented under it, so that they run as doctests. griffe reads a Google-style
examples section only when it is titled `Examples:` and indented, and would otherwise show
the doctests as Markdown quotes. This rewrites the docstrings griffe loads, not the files.
"""

import re

import griffe

# "Example:" and the package docstring's "Example (examples in docstrings assume ...):".
HEADER = re.compile(r"^Examples?(?: \((?P<note>.*)\))?:\s*$")


def indented_examples(text: str) -> str:
    """Return `text` with its `Example:` section as a Google-style `Examples:` section.

    Args:
        text: a docstring, dedented.

    Returns:
        The docstring with everything after its first `Example:` line indented by 4 spaces
        under an `Examples:` title; unchanged if it has no such section or it is indented.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = HEADER.match(line)
        if not match:
            continue
        body = lines[i + 1 :]
        while body and not body[0].strip():
            body = body[1:]  # the section's text has to start on the line after its title
        if not body or body[0].startswith(" "):
            return text
        note = match.group("note")
        head = ["Examples:"] + ([f"    {note[0].upper()}{note[1:]}.", ""] if note else [])
        body = [f"    {body_line}" if body_line.strip() else "" for body_line in body]
        return "\n".join(lines[:i] + head + body)
    return text


class DoctestExamples(griffe.Extension):
    """Rewrite the `Example:` section of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        """Rewrite one object's docstring as it is loaded.

        Args:
            obj: the module, class, function or attribute griffe has just loaded.
            **kwargs: the other arguments of griffe's hook, unused.
        """
        if obj.docstring is not None:
            obj.docstring.value = indented_examples(obj.docstring.value)
