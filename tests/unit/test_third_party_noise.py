"""Machine-dependent third-party lines are quiet on every path: the package sets them quiet when it is imported."""
import logging

import mllm_mer

# bitsandbytes logs this through its module logger, at import, on CPUs with AVX512-BF16 and no `kernels` package.
BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNEL_LINE = "Failed to load CPU gemm_4bit_forward from kernels-community: %s"


def test_the_bitsandbytes_kernel_line_is_quiet_once_the_package_is_imported(caplog):
    assert mllm_mer.__name__ == "mllm_mer"  # the import above is what quiets it, before bitsandbytes can load
    with caplog.at_level(logging.DEBUG):  # everything that reaches a handler is recorded
        logging.getLogger(BNB_LOGGER).warning(BNB_KERNEL_LINE, "No module named 'kernels'")
        logging.getLogger(BNB_LOGGER).error("a real bitsandbytes error")
    messages = [record.getMessage() for record in caplog.records if record.name == BNB_LOGGER]
    assert messages == ["a real bitsandbytes error"]  # the kernel line forced through its channel, and dropped
