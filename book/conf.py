"""The course site: ``python -m sphinx -c book . _build/html`` (``pip install ".[site]"``).

Jupyter Book's engine, configured here in one place: MyST for the Markdown, MyST-NB for
the notebooks (their committed outputs, never re-executed), the book theme, and
book/_toc.yml for what the site holds and in what order. The source folder is the
repository's root, so docs/ and notebooks/ are read where they are.
"""

import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
sys.path[:0] = [str(BOOK), str(BOOK.parent)]  # srsan_book.py; the checkout's srsan_np, documented

project = "srsan-np"
author = "the srsan-np authors"
html_title = "srsan-np"

extensions = [
    "myst_nb",                 # Markdown (MyST) and notebooks
    "sphinx_external_toc",     # book/_toc.yml: the pages and their order
    "sphinx.ext.autodoc",      # "The source": docstrings
    "sphinx.ext.napoleon",     # ... written in numpydoc
    "sphinx.ext.viewcode",     # ... and the highlighted code of each module
    "sphinx-mathjax-offline",  # MathJax 3 copied into the site: no network to read it
    "srsan_book",              # derivations and source, linked both ways
]

root_doc = "README"
external_toc_path = "book/_toc.yml"
external_toc_exclude_missing = False
exclude_patterns = [".*", "**/.*", "_build", "**/.ipynb_checkpoints", "tests", "benchmarks",
                    "runs", "srsan-exercises"]  # not even walked

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph or a list item, as GitHub reads it
myst_heading_anchors = 3
nb_execution_mode = "off"  # the committed outputs are the ones shown

mathjax_path = "mathjax/tex-chtml.js"  # _static/mathjax/, from sphinx-mathjax-offline

autodoc_member_order = "bysource"
napoleon_google_docstring = False

html_theme = "sphinx_book_theme"
html_theme_options = {"home_page_in_toc": True, "show_toc_level": 2}
html_context = {"default_mode": "light"}
html_sourcelink_suffix = ""
html_static_path = ["_static"]  # book/_static
html_css_files = ["course.css"]
