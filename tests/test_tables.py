"""The one table renderer: LaTeX escaping of every special character, and the Markdown, CSV and booktabs LaTeX of a
small table with a direction, intervals, a missing value, notes and a caption."""
from __future__ import annotations

import pytest

from ophora.tables import Column, Table, best, csv_text, latex, markdown, tex_escape, write_tables


@pytest.mark.parametrize("char, escaped", [
    ("\\", r"\textbackslash{}"), ("{", r"\{"), ("}", r"\}"), ("$", r"\$"), ("&", r"\&"), ("%", r"\%"),
    ("_", r"\_"), ("#", r"\#"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
])
def test_each_special_character_is_escaped(char, escaped):
    assert tex_escape(f"a{char}b") == f"a{escaped}b"


def test_a_backslash_keeps_its_braces_and_plain_text_is_untouched():
    assert tex_escape("C:\\runs") == r"C:\textbackslash{}runs"  # not \textbackslash\{\}
    assert tex_escape(r"\{}") == r"\textbackslash{}\{\}"
    assert tex_escape("FID 3.00 [1.0, 2.0] (paper) -") == "FID 3.00 [1.0, 2.0] (paper) -"


def _table(**extra) -> Table:
    columns = (Column("model", "model", tex="Model", align="l"),
               Column("fid", "FID", number=True, interval=("fid_low", "fid_high"), better="lower"),
               Column("acc", "acc %", number=True, better="higher", md_right=True))
    records = ({"model": "A_1", "fid": 3.0, "fid_low": 2.5, "fid_high": 3.5, "acc": 50.0},
               {"model": "B & C", "fid": 4.25, "fid_low": None, "fid_high": None, "acc": None},
               {"model": "D", "fid": float("nan"), "fid_low": None, "fid_high": None, "acc": 75.125})
    return Table(columns, records, **extra)


def test_markdown_of_a_small_table():
    table = _table(title="Demo", notes=("first", "second"), notes_title="Notes:", footer="Made by a test.")
    assert markdown(table) == (
        "# Demo\n\n"
        "| model | FID ↓ | acc % ↑ |\n"
        "|---|---|---:|\n"
        "| A_1 | **3.00** [2.50, 3.50] | 50.00 |\n"
        "| B & C | 4.25 | - |\n"
        "| D | - | **75.12** |\n"
        "\nNotes:\n- first\n- second\n\nMade by a test.\n")


def test_booktabs_latex_of_a_small_table():
    assert latex(_table(caption="50% of $x_i$", tex_missing="--", groups=((("", 1), ("scores", 2)),))) == (
        "\\begin{table}[t]\n\\centering\n\\caption{50\\% of \\$x\\_i\\$}\n"
        "\\begin{tabular}{lcc}\n\\toprule\n"
        " & \\multicolumn{2}{c}{scores} \\\\\n"
        "Model & FID $\\downarrow$ & acc \\% $\\uparrow$ \\\\\n\\midrule\n"
        "A\\_1 & \\textbf{3.00}\\,{\\scriptsize[2.50, 3.50]} & 50.00 \\\\\n"
        "B \\& C & 4.25 & -- \\\\\n"
        "D & -- & \\textbf{75.12} \\\\\n"
        "\\bottomrule\n\\end{tabular}\n\\end{table}\n")
    assert latex(_table()).startswith("\\begin{tabular}{lcc}\n\\toprule\nModel & ")  # no caption: bare tabular


def test_csv_of_a_small_table_and_best_values():
    table = _table()
    assert csv_text(table.records, ["model", "fid", "acc"]) == "model,fid,acc\nA_1,3.0,50.0\nB & C,4.25,\nD,,75.125\n"
    assert csv_text(table.records, ["model", "acc"], decimals=1) == "model,acc\nA_1,50.0\nB & C,\nD,75.1\n"
    assert best(table, table.columns[1]) == 3.0 and best(table, table.columns[2]) == 75.125
    assert best(table, table.columns[0]) is None  # no direction, no best


def test_write_tables_writes_the_three_files(tmp_path):
    paths = write_tables(_table(), tmp_path / "out", ["model", "fid"], csv_decimals=2)
    assert sorted(p.name for p in paths.values()) == ["table.csv", "table.md", "table.tex"]
    assert (tmp_path / "out" / "table.csv").read_text() == "model,fid\nA_1,3.00\nB & C,4.25\nD,\n"
    assert (tmp_path / "out" / "table.md").read_text() == markdown(_table())
