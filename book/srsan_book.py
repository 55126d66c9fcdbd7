"""The course site's one Sphinx extension: derivations and source, linked both ways.

- Wherever a page names a module of the package as code (`srsan_np/ops/attention.py`,
  or `fast/encoder.py` as docs/derivations.md §13 writes it) or links to its file, the
  name becomes a link to that module's entry under "The source".
- ``.. srsan-modules::`` (the pages in book/api/) writes one section per module listed in
  its content: its path as title, the sections that explain it (every heading on the site
  that names the module: a derivation, a step of the data protocol), a link to its
  highlighted source, then its docstrings.

A page read on GitHub keeps its plain paths; only the site adds the links.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "srsan_np"


def module_named(path: str) -> str | None:
    """The dotted module a repository path names, or None.

    ``srsan_np/ops/attention.py`` -> ``srsan_np.ops.attention``; ``srsan_np/fast/`` ->
    ``srsan_np.fast``; a path starting at a subpackage (``fast/encoder.py``) is read from
    ``srsan_np/``. Only files that exist count, so prose that merely looks like a path
    stays prose.
    """
    parts = PurePosixPath(path.strip().rstrip("/")).parts
    if not parts or any(p in ("", ".", "..") for p in parts):
        return None
    if parts[0] != PACKAGE:
        if not (ROOT / PACKAGE / parts[0] / "__init__.py").is_file():
            return None
        parts = (PACKAGE, *parts)
    file = ROOT.joinpath(*parts)
    if file.suffix == ".py" and file.is_file():
        parts = parts[:-1] + (file.stem,)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if (file / "__init__.py").is_file():
        return ".".join(parts)
    return None


def module_xref(module: str, content: nodes.Node) -> addnodes.pending_xref:
    # a module the site does not document stays code, without a warning
    xref = addnodes.pending_xref("", refdomain="py", reftype="mod", reftarget=module,
                                 refexplicit=True)
    xref += content
    return xref


def section_title(title: nodes.title) -> str:
    """"6. Multi-head self-attention — `srsan_np/ops/attention.py`" -> its words only."""
    return title.astext().split(" — ")[0].strip()


def inside_link(node: nodes.Node) -> bool:
    links = (nodes.reference, addnodes.pending_xref, addnodes.download_reference)
    while node.parent is not None:
        node = node.parent
        if isinstance(node, links):
            return True
    return False


class LinkModulePaths(SphinxTransform):
    """Module paths written as code, or linked as files, become links to their entries."""

    default_priority = 500

    def apply(self) -> None:
        sections = self.env.srsan_sections  # module -> [(docname, anchor, title)]
        source_page = any(self.document.findall(explained_in))  # a page of book/api/
        for literal in list(self.document.findall(nodes.literal)):
            parent = literal.parent
            if inside_link(literal):
                continue
            heading = isinstance(parent, nodes.title) and isinstance(parent.parent, nodes.section)
            module = module_named(literal.astext())
            if module is None or (heading and source_page):  # its own page's headings
                continue
            literal.replace_self(module_xref(module, literal.deepcopy()))
            if heading:
                entry = (self.env.docname, parent.parent["ids"][0], section_title(parent))
                sections.setdefault(module, []).append(entry)
        for download in list(self.document.findall(addnodes.download_reference)):
            target = (ROOT / PurePosixPath(self.env.docname).parent / download["reftarget"])
            try:
                module = module_named(target.resolve().relative_to(ROOT).as_posix())
            except ValueError:  # outside the repository
                continue
            if module is not None:
                download.replace_self(module_xref(module, download.children))


class explained_in(nodes.General, nodes.Element):
    """Stands where a module's "explained in" line goes, until every page has been read."""


class ExplainedIn(SphinxDirective):
    required_arguments = 1

    def run(self):
        return [explained_in(module=self.arguments[0])]


class Modules(SphinxDirective):
    """``.. srsan-modules::`` then one dotted module name a line."""

    has_content = True

    def run(self):
        lines = []
        for module in (m.strip() for m in self.content if m.strip()):
            path = module.replace(".", "/")
            package = (ROOT / path / "__init__.py").is_file()
            title = f"``{path}{'/' if package else '.py'}``"
            lines += [title, "-" * len(title), "",
                      f".. srsan-explained-in:: {module}", "",
                      f".. automodule:: {module}", ""]
            if not package:  # a package's members are its modules, listed after it
                lines[-1:] = ["   :members:", ""]
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(lines, self.get_source_info()[0]),
                                 container)
        return container.children


def fill_explained_in(app, doctree, docname) -> None:
    env = app.env
    for node in list(doctree.findall(explained_in)):
        module = node["module"]
        para = nodes.paragraph()
        for i, (where, anchor, title) in enumerate(env.srsan_sections.get(module, [])):
            para += nodes.Text("Explained in " if i == 0 else "; ")
            uri = app.builder.get_relative_uri(docname, where) + "#" + anchor
            label = f"{env.titles[where].astext()}, {title}"
            para += nodes.reference("", label, internal=True, refuri=uri)
        if getattr(env, "_viewcode_modules", {}).get(module):
            para += nodes.Text(". " if len(para) else "")
            page = "_modules/" + module.replace(".", "/")
            para += nodes.reference("", "The source, highlighted", internal=True,
                                    refuri=app.builder.get_relative_uri(docname, page))
            para += nodes.Text(".")
        node.replace_self(para if len(para) else [])


def reset(app, env, docnames) -> None:
    if not hasattr(env, "srsan_sections"):
        env.srsan_sections = {}
    for module, entries in env.srsan_sections.items():
        env.srsan_sections[module] = [e for e in entries if e[0] not in docnames]


def merge(app, env, docnames, other) -> None:
    for module, entries in getattr(other, "srsan_sections", {}).items():
        env.srsan_sections.setdefault(module, []).extend(entries)


def skip_namedtuple_fields(app, what, name, obj, skip, options):
    """A cache's fields are listed in its class's source; "Alias for field number 3" is noise."""
    doc = getattr(obj, "__doc__", None) or ""
    return True if doc.startswith("Alias for field number") else None


def setup(app):
    app.add_node(explained_in)
    app.add_directive("srsan-explained-in", ExplainedIn)
    app.add_directive("srsan-modules", Modules)
    app.add_transform(LinkModulePaths)
    app.connect("env-before-read-docs", reset)
    app.connect("env-merge-info", merge)
    app.connect("doctree-resolved", fill_explained_in)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
