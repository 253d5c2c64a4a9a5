"""The XLA:CPU defaults added on import: only for tested jaxlib versions, never over a user's."""

import os

from sdm_jax import xla_defaults


def test_flags_are_appended_for_a_tested_jaxlib():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert xla_defaults.apply(environ, jaxlib_version="0.10.2")
    assert environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=4",
                                            "--xla_cpu_experimental_ynn_fusion_type=dot"]
    empty: dict = {}
    assert xla_defaults.apply(empty, jaxlib_version="0.10.0")
    assert empty["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot"


def test_flags_are_left_alone_when_set_refused_or_untested():
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise"}
    assert not xla_defaults.apply(mine, jaxlib_version="0.10.2")
    assert mine["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise"
    refused = {xla_defaults.OPT_OUT: "0"}
    assert not xla_defaults.apply(refused, jaxlib_version="0.10.2")
    assert "XLA_FLAGS" not in refused
    for version in ("0.9.1", "0.11.0", ""):
        untested: dict = {}
        assert not xla_defaults.apply(untested, jaxlib_version=version)
        assert "XLA_FLAGS" not in untested


def test_importing_sdm_jax_set_the_flag_in_this_process():
    flags = os.environ.get("XLA_FLAGS", "")
    installed = xla_defaults._jaxlib_version().startswith(xla_defaults.TESTED_JAXLIB)
    if installed and os.environ.get(xla_defaults.OPT_OUT) != "0":
        assert xla_defaults.YNN_FUSION_OPTION in flags
