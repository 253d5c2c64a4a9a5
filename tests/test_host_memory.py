import os
import subprocess
import sys

import pytest

from sdm_jax.host_memory import (
    OPT_OUT_VAR,
    TUNABLES_VAR,
    glibc_version,
    huge_page_environment,
)

GLIBC = (2, 36)


def test_adds_the_tunable_and_keeps_the_rest_of_the_environment():
    environ = huge_page_environment({"PATH": "/bin"}, GLIBC)
    assert environ == {"PATH": "/bin", TUNABLES_VAR: "glibc.malloc.hugetlb=1"}


def test_appends_to_the_users_tunables():
    environ = huge_page_environment({TUNABLES_VAR: "glibc.malloc.arena_max=2"}, GLIBC)
    assert environ[TUNABLES_VAR] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, libc", [
    ({TUNABLES_VAR: "glibc.malloc.hugetlb=0"}, GLIBC),  # the user's choice stands
    ({TUNABLES_VAR: "glibc.malloc.hugetlb=1"}, GLIBC),  # already re-executed
    ({OPT_OUT_VAR: "0"}, GLIBC),
    ({OPT_OUT_VAR: "off"}, GLIBC),
    ({}, (2, 34)),  # glibc without the tunable
    ({}, None),  # not glibc
])
def test_leaves_the_process_alone(environ, libc):
    assert huge_page_environment(environ, libc) is None


SCRIPT = """
import os, sys
from sdm_jax.host_memory import use_huge_page_malloc
use_huge_page_malloc()
print(os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or (glibc_version() or (0,)) < (2, 35),
                    reason="needs Linux with glibc >= 2.35")
@pytest.mark.parametrize("opt_out, expected", [("1", "glibc.malloc.hugetlb=1"), ("0", "None")])
def test_entry_point_reexecutes_once_with_its_arguments(tmp_path, opt_out, expected):
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT)
    environ = {key: value for key, value in os.environ.items() if key != TUNABLES_VAR}
    done = subprocess.run([sys.executable, str(script), "a", "--b=c"], capture_output=True,
                          text=True, check=True, env={**environ, OPT_OUT_VAR: opt_out})
    assert done.stdout.strip() == f"{expected} ['a', '--b=c']"
