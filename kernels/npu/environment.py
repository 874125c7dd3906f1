"""What the Ascend software stack on this host looks like: torch_npu, CANN, devices, our custom op.

Used by ``m1-ascend doctor``. Every probe degrades to "not found" instead of raising, because
the point is to explain a half-installed host. ``torch_npu`` is imported only when it is
installed (off device nothing NPU-related is imported).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_TOOLKIT = Path("/usr/local/Ascend/ascend-toolkit/latest")
VENDOR = "m1_ascend"
_VERSION_LINE = re.compile(r"^\s*(?:version|Version)\s*[=:]\s*(\S+)", re.MULTILINE)


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def cann_home(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The CANN toolkit root: ``ASCEND_HOME_PATH``/``ASCEND_TOOLKIT_HOME`` (set by set_env.sh) or the default."""
    for name in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        if environ.get(name):
            return Path(environ[name])
    return DEFAULT_TOOLKIT if DEFAULT_TOOLKIT.is_dir() else None


def cann_version(home: Path | None) -> tuple[str | None, str | None]:
    """(version, file it was read from), from the toolkit's install/version files."""
    if home is None:
        return None, None
    candidates = [*sorted(home.glob("*/ascend_toolkit_install.info")), *sorted(home.glob("*_install.info")),
                  home / "version.cfg", home / "compiler" / "version.info", home / "runtime" / "version.info"]
    for path in candidates:
        try:
            match = _VERSION_LINE.search(path.read_text(errors="replace"))
        except OSError:
            continue
        if match:
            return match.group(1), str(path)
    return None, None


def probe_torch_npu() -> dict[str, Any]:
    """Import torch_npu if installed and list the visible devices."""
    info: dict[str, Any] = {"installed": importlib.util.find_spec("torch_npu") is not None,
                            "version": package_version("torch-npu"), "import_error": None,
                            "device_count": 0, "device_names": []}
    if not info["installed"]:
        return info
    try:
        torch_npu = importlib.import_module("torch_npu")
        count = int(torch_npu.npu.device_count()) if torch_npu.npu.is_available() else 0
        info["device_count"] = count
        info["device_names"] = [str(torch_npu.npu.get_device_name(i)) for i in range(count)]
    except Exception as exc:  # CANN missing or mismatched: report, do not crash
        info["import_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return info


def custom_op_vendor_dirs(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Installed ConvKv op packages: ``ASCEND_CUSTOM_OPP_PATH`` entries and ``$ASCEND_OPP_PATH/vendors/m1_ascend``."""
    entries = [p for p in environ.get("ASCEND_CUSTOM_OPP_PATH", "").split(":") if p]
    if environ.get("ASCEND_OPP_PATH"):
        entries.append(str(Path(environ["ASCEND_OPP_PATH"]) / "vendors" / VENDOR))
    return [p for p in entries if Path(p).name == VENDOR and (Path(p) / "op_api" / "lib" / "libcust_opapi.so").is_file()]
