"""Build hook: compiles the native modules, the JSON nesting check (`cds_service/_jsondepth.c`)
and the FHIR JSON scans (`cds_service/_fhirscan.c`).

Hatchling runs it for wheels and editable installs. Where no C compiler or Python headers are
found, the build goes on without them and `cds_service.jsondepth` and `cds_service.fhirscan`
use their Python versions (the same answers, several times slower): the package stays
installable everywhere.
"""

from __future__ import annotations

import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Each native module's source, and what it does (for the warning when it cannot be built).
SOURCES = {
    Path("cds_service") / "_jsondepth.c": "the native JSON nesting check",
    Path("cds_service") / "_fhirscan.c": "the native FHIR JSON scans",
}


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
        for relative, what in SOURCES.items():
            source = Path(self.root) / relative
            target = source.with_name(source.stem + suffix)
            if not compile_extension(source, target):
                self.app.display_warning(
                    f"cds-service: {what} was not built (no C compiler or Python headers); "
                    "the Python version is used"
                )
                continue
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":  # an editable install imports it from the source tree
                build_data["force_include"][str(target)] = str(relative.with_name(target.name))


def compile_extension(source: Path, target: Path) -> bool:
    """Compile `source` into the extension module `target`; False when it cannot be built."""
    compiler = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return False
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-O2",
        f"-I{include}",
        str(source),
        "-o",
        str(target),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True
