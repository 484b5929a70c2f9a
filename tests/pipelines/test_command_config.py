"""pipelines/command_config.py: the comma-separated lists of the command line."""

from __future__ import annotations

import pytest

from treeq.errors import ConfigError
from treeq.pipelines.command_config import number_list


def test_number_list_reads_each_word_and_skips_blanks():
    assert number_list("2, 4,8,", "--budgets") == (2, 4, 8)
    assert number_list("0.5,1", "--value-mix", float) == (0.5, 1.0)


@pytest.mark.parametrize("text", ["", ",", "8,x", "nan", "1.5"])
def test_number_list_refuses_a_word_that_is_no_integer_or_no_number_at_all(text):
    with pytest.raises(ConfigError, match=r"^--budgets must be integers separated by commas"):
        number_list(text, "--budgets")
