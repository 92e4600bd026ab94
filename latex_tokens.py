"""LaTeX answers as tokens: the token pattern, the tables of commands, `tokenize`, `nesting_depth`.

The first stage of latex.parse (latex.py reads the tokens into sympy values). Unicode symbols
become their LaTeX commands, aliases (\\dfrac, \\le, \\cdot, ...) one canonical command each, and
spacing and sizing commands (\\left, \\quad, ...) are dropped. Model text is untrusted: an answer
longer than MAX_CHARS is refused before it is scanned, and nesting_depth lets the parser refuse
pathological nesting in one linear pass. The command tables (FUNCTIONS, GREEK, WRAPPERS,
RELATIONS) are the vocabulary the parser accepts.
"""

import re

import sympy

MAX_CHARS = 1_000  # longest answer we parse


class LatexError(ValueError):
    """The text is not an answer this parser understands, or it is too large to build."""


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?|\.\d+)
  | (?P<begin>\\begin\s*\{\s*[a-zA-Z*]+\s*\})
  | (?P<end>\\end\s*\{\s*[a-zA-Z*]+\s*\})
  | (?P<command>\\[a-zA-Z]+)
  | (?P<rowsep>\\\\)
  | (?P<escaped>\\[^a-zA-Z])
  | (?P<op><=|>=|!=|\S)
""",
    re.VERBOSE,
)

_UNICODE = {
    "×": "*",
    "·": "*",
    "÷": "/",
    "−": "-",
    "≤": "<=",
    "≥": ">=",
    "≠": "!=",
    "π": "\\pi",
    "∞": "\\infty",
    "√": "\\sqrt",
    "≈": "\\approx",
    "∪": "\\cup",
    "∈": "\\in",
}

# Command spellings that mean the same token.
_ALIASES = {
    "\\le": "<=",
    "\\leq": "<=",
    "\\leqslant": "<=",
    "\\ge": ">=",
    "\\geq": ">=",
    "\\geqslant": ">=",
    "\\ne": "!=",
    "\\neq": "!=",
    "\\lt": "<",
    "\\gt": ">",
    "\\cdot": "*",
    "\\times": "*",
    "\\ast": "*",
    "\\div": "/",
    "\\{": "\\{",
    "\\}": "\\}",
    "\\lbrace": "\\{",
    "\\rbrace": "\\}",
    "\\|": "|",
    "\\lvert": "|",
    "\\rvert": "|",
    "\\vert": "|",
    "\\mid": "|",
    "\\colon": ":",
    "\\dfrac": "\\frac",
    "\\tfrac": "\\frac",
    "\\cfrac": "\\frac",
    "\\dbinom": "\\binom",
    "\\tbinom": "\\binom",
    "\\varnothing": "\\emptyset",
    "\\varpi": "\\pi",
    "\\to": "\\rightarrow",
    "\\Rightarrow": "\\rightarrow",
    "\\implies": "\\rightarrow",
    "\\approxeq": "\\approx",
    "\\simeq": "\\approx",
    "\\sim": "\\approx",
    "\\mp": "\\mp",
    "\\pm": "\\pm",
    "\\ln": "\\log",
}
_IGNORED = {
    "\\,",
    "\\;",
    "\\:",
    "\\!",
    "\\ ",
    "\\quad",
    "\\qquad",
    "\\displaystyle",
    "\\left",
    "\\right",
    "\\big",
    "\\Big",
    "\\bigg",
    "\\Bigg",
    "\\bigl",
    "\\bigr",
    "\\Bigl",
    "\\Bigr",
    "\\limits",
    "\\nolimits",
    "\\textstyle",
    "\\middle",
    "~",
    "\\hline",
}
FUNCTIONS = {
    "\\sin": sympy.sin,
    "\\cos": sympy.cos,
    "\\tan": sympy.tan,
    "\\sec": sympy.sec,
    "\\csc": sympy.csc,
    "\\cot": sympy.cot,
    "\\arcsin": sympy.asin,
    "\\arccos": sympy.acos,
    "\\arctan": sympy.atan,
    "\\sinh": sympy.sinh,
    "\\cosh": sympy.cosh,
    "\\tanh": sympy.tanh,
    "\\exp": sympy.exp,
    "\\log": sympy.log,
    "\\Gamma": sympy.gamma,
}
GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
WRAPPERS = {
    "\\text",
    "\\textbf",
    "\\textit",
    "\\textrm",
    "\\textnormal",
    "\\mathrm",
    "\\mathbf",
    "\\mathit",
    "\\mathsf",
    "\\mathcal",
    "\\mathbb",
    "\\boldsymbol",
    "\\bm",
    "\\mbox",
    "\\operatorname",
    "\\overline",
    "\\vec",
    "\\hat",
    "\\bar",
    "\\widehat",
    "\\overrightarrow",
    "\\boxed",
    "\\fbox",
}
RELATIONS = {"=", "<", ">", "<=", ">=", "!=", "\\approx", "\\in", "\\equiv"}


def tokenize(text):
    """[(kind, text)] tokens of a LaTeX answer; LatexError on anything unexpected."""
    if len(text) > MAX_CHARS:
        raise LatexError(f"answer longer than {MAX_CHARS} characters")
    for symbol, replacement in _UNICODE.items():
        text = text.replace(symbol, f" {replacement} ")
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "space":
            continue
        if kind in ("begin", "end"):
            value = re.sub(r"\s+", "", value)
        if kind in ("command", "escaped"):
            value = _ALIASES.get(value, value)
        if value in _IGNORED:
            continue
        tokens.append((kind, value))
    return tokens


def nesting_depth(text):
    """Deepest nesting of (), [], {} in `text` (linear scan, used to refuse pathological input)."""
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    return deepest
