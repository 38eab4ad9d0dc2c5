"""A griffe extension for the API reference: the docstrings are written with reST's inline
roles (``:class:`~sgdinfluence.Run```), which Markdown would show as typed; each becomes a
code span of the name as Sphinx would print it (``~`` keeps the last part), and a paragraph's
closing ``::`` (reST's literal block) a single colon."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _name(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown(text: str) -> str:
    text = ROLE.sub(_name, text)
    return re.sub(r"(\S)::\n", r"\1:\n", text)


class RstRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
