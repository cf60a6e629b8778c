"""One meaning per word (issue 40). "Generation" is what vidretry does to videos; the retry round
is ``retry_round`` in Python, and ``generation`` only where it must stay: the database
column's name (inside SQL text), ``JobContext.generation`` (the deprecated alias for the
handlers of 0.19.0) and the old key the JSON output and command templates keep for one
release. The words are checked in the package's names, strings (messages, help, f-strings,
``.get("...")``) and comments, its templates, the example settings and the SQL files' comments.
"Store" is where videos are kept; the PostgreSQL package is ``vidretry.db``."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vidretry"

# The one identifier allowed: the deprecated alias (models.py, class JobContext).
ALIASES = {("vidretry/models.py", "JobContext", "generation")}
# Where "generation" may be a dict key: the old names the JSON output and a command template
# still give for one release.
OLD_KEYS = {"vidretry/queue/reports.py", "vidretry/queue/handlers.py"}
# "generation" meant as making videos, the word's one meaning ("the generation step").
MAKING = re.compile(
    r"(?:video|attempt's|the|a|one) generation(?= (?:step|handler|attempt|took|is\b))"
    r"|video generation|generation (?:step|handler|attempt)s?\b",
    re.IGNORECASE,
)
# The column (or a parameter, a key) by its name: quoted, qualified, compared, listed.
COLUMN = re.compile(
    r"[\"`']generation[\"`']|``generation``|\w_generation\b|\w\.generation\b"
    r"|\bgeneration\s*(?:[=<>+]|(?i:as)\b)|[(,]\s*generation\s*[,):]",
)
# A placeholder by the old name: kept deliberately only where the text says it is the old name.
PLACEHOLDER = re.compile(r"[{<]generation\b")
DELIBERATE = re.compile(r"old name|deprecated", re.IGNORECASE)
# Text outside Python that may say the word: templates, the example settings, SQL comments
# (the migrations are history, never edited; the SQL code itself names the column).
TEXTS = [
    *(PACKAGE / "web" / "templates").rglob("*.html"), *(PACKAGE / "web" / "static").rglob("*.js"),
    ROOT / "config.example.toml",
]  # fmt: skip
SQL_FILES = [*(ROOT / "sql" / "functions").glob("*.sql"), *(ROOT / "sql" / "queries").glob("*.sql")]
# The PostgreSQL package by its old name, or "store" said of the database.
OLD_STORE = re.compile(r"vidretry[./]store\b|\bjob[- ]store\b|\boutbox[- ]store\b", re.IGNORECASE)


def misuses(source: str, path: str) -> list[str]:
    """Where the module's Python (not its SQL text, docstrings or comments) says
    "generation" for the retry round: each as ``path:line: what``."""
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    def visit(node: ast.AST, cls: str | None) -> None:
        if isinstance(node, ast.ClassDef):
            if "generation" in node.name.lower():
                flag(node, f"class {node.name}")
            for child in node.body:
                visit(child, node.name)
            for deco in node.decorator_list:
                visit(deco, cls)
            return
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and "generation" in node.name.lower()
            and (path, cls, node.name) not in ALIASES
        ):
            flag(node, f"def {node.name}")
        names = {
            ast.Name: "id", ast.Attribute: "attr", ast.arg: "arg", ast.keyword: "arg",
            ast.alias: "name",
        }  # fmt: skip
        for kind, field in names.items():
            if isinstance(node, kind):
                name = getattr(node, field) or ""
                if "generation" in name.lower():
                    flag(node, f"name {name}")
        if isinstance(node, ast.alias) and node.asname and "generation" in node.asname.lower():
            flag(node, f"name {node.asname}")
        if isinstance(node, ast.Subscript) and _says_generation(node.slice):
            flag(node, 'row["generation"]: select the column AS retry_round')
        if isinstance(node, ast.Dict) and path not in OLD_KEYS:
            for key in node.keys:
                if key is not None and _says_generation(key):
                    flag(key, '{"generation": ...}: the key is retry_round')
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "{generation}" in node.value
            and path not in OLD_KEYS
        ):
            flag(node, "a {generation} placeholder")
        for child in ast.iter_child_nodes(node):
            visit(child, cls)

    visit(ast.parse(source), None)
    return found


def _says_generation(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "generation"


def says_old_meaning(text: str, *, placeholder_kept: bool = False) -> bool:
    """Whether ``text`` (a string, a comment, a line) says "generation" for the retry round:
    not as making videos, not as the column by its name, nor as an old placeholder kept
    deliberately."""
    if PLACEHOLDER.search(text) and not (placeholder_kept or DELIBERATE.search(text)):
        return True
    rest = PLACEHOLDER.sub("", COLUMN.sub("", MAKING.sub("", text)))
    return re.search(r"\bgeneration\b", rest, re.IGNORECASE) is not None


def misworded_text(source: str, path: str) -> list[str]:
    """Where the module's strings (messages, help, f-strings, docstrings, ``.get("...")``) or
    comments say "generation" for the retry round: each as ``path:line: the text``."""
    kept = path in OLD_KEYS
    found = [
        f"{path}:{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (
            not kept
            if node.value == "generation"
            else says_old_meaning(node.value, placeholder_kept=kept)
        )
    ]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and says_old_meaning(token.string, placeholder_kept=kept):
            found.append(f"{path}:{token.start[0]}: {token.string}")
    return found


def sql_comments(text: str) -> list[tuple[int, str]]:
    """The ``--`` comments of an SQL file, by line."""
    return [
        (number, line.split("--", 1)[1])
        for number, line in enumerate(text.splitlines(), 1)
        if "--" in line
    ]


def test_python_names_the_retry_round_retry_round() -> None:
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        path = module.relative_to(ROOT).as_posix()
        if "generation" in path:
            found.append(f"{path}: a module named for generation")
        found += misuses(module.read_text(encoding="utf-8"), path)
    assert not found, "\n".join(found)


def test_strings_comments_templates_settings_and_sql_comments_say_retry_round() -> None:
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        path = module.relative_to(ROOT).as_posix()
        found += misworded_text(module.read_text(encoding="utf-8"), path)
    for file in TEXTS:
        lines = file.read_text(encoding="utf-8").splitlines()
        found += [
            f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
            for number, line in enumerate(lines, 1)
            if says_old_meaning(line)
        ]
    for file in SQL_FILES:
        found += [
            f"{file.relative_to(ROOT)}:{number}: --{comment}"
            for number, comment in sql_comments(file.read_text(encoding="utf-8"))
            if says_old_meaning(comment)
        ]
    assert len(TEXTS) > 3  # the files are found
    assert len(SQL_FILES) > 10
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'log.info(f"retrying {asset}, generation {n}")',
        'row.get("generation")',
        'getattr(job, "generation")',
        'app.command(help="Retry: starts a new generation of the asset.")',
        "# the asset's generation",
        'argv = ["gen", "{generation}"]',
    ],
)
def test_the_text_check_sees_the_old_word(source: str) -> None:
    assert misworded_text(source, "vidretry/example.py")


@pytest.mark.parametrize(
    "line",
    [
        "# Attempts per generation before the asset fails for good.",
        "# {asset_id} {name} {generation} and every job param",
        "# Where {output} points: <output_dir>/<asset_id>-g<generation>.mp4",
        "<td>generation {{ asset.generation }}</td>",
        "Returns the new generation; the users",
        "'retried' (the new generation), 'out_of_retries'",
        "The final failure of a generation, fenced by the lease token.",
    ],
)
def test_the_text_check_sees_the_old_word_in_settings_templates_and_sql(line: str) -> None:
    assert says_old_meaning(line)


@pytest.mark.parametrize(
    "text",
    [
        "A Postgres job queue for video generation.",
        "The generation step: what a worker runs.",
        "How long one attempt's generation took.",
        "SELECT outcome, generation AS retry_round FROM vidretry_asset(%s)",
        'The column "generation" is the retry round.',
        "within a priority retried jobs (generation > 0)",
        "(asset, user, kind, generation)",
        "(generation: the outage's own number)",
        "the button's retry round (button_generation)",
        "{generation}, the retry round's old name, still works",
        "JobContext.generation is deprecated: use JobContext.retry_round",
    ],
)
def test_the_text_check_spares_making_videos_the_column_and_the_kept_names(text: str) -> None:
    assert not says_old_meaning(text)


def test_the_text_check_spares_the_kept_keys_where_they_are_kept() -> None:
    source = 'values = {"generation": round}\nif "{generation" in part: pass\n'
    assert misworded_text(source, "vidretry/queue/handlers.py") == []
    assert misworded_text(source, "vidretry/queue/other.py")


@pytest.mark.parametrize(
    "source",
    [
        "def f(generation): pass",
        "x = job.generation",
        "generation = 1",
        "f(generation=1)",
        "class A:\n    def generation(self): pass",
        "class Generation: pass",
        'row["generation"]',
        '{"generation": 1}',
        'f"{asset}-g{generation}"',
        "from m import generation",
        "import m as generation_of",
    ],
)
def test_the_check_sees_the_old_word(source: str) -> None:
    assert misuses(source, "vidretry/example.py")


def test_the_check_spares_sql_docs_and_the_alias() -> None:
    source = '''
class JobContext:
    @property
    def generation(self):
        """The retry round's old name."""
        # the column "generation"
        return fetch("SELECT generation AS retry_round FROM video_assets")
'''
    assert misuses(source, "vidretry/models.py") == []
    assert misuses(source, "vidretry/other.py")  # the alias is one class's only


def test_store_is_where_videos_are_kept() -> None:
    """No text of the package, the docs or the SQL names the PostgreSQL package by its old
    path (``vidretry.store``) or calls the database a store."""
    files = [
        *PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html"), *(ROOT / "docs").rglob("*.md"),
        ROOT / "README.md", *(ROOT / "sql").rglob("*.sql"),
    ]  # fmt: skip
    found = [
        f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
        for file in files
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
        if OLD_STORE.search(line)
    ]
    assert not (PACKAGE / "store").exists(), "vidretry/store/ is back: the package is vidretry/db"
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "from vidretry.store import db",
        "see vidretry/store/db.py",
        "The job store: ...",
        "job-store",
    ],
)
def test_the_store_check_sees_the_old_meaning(line: str) -> None:
    assert OLD_STORE.search(line)
