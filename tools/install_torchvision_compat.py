"""Install the torchvision import hook into the current environment, only if it is needed.

Run by ``make setup``. If ``import torchvision`` already works (GPU machines, matching builds)
this does nothing. Otherwise it copies ``gp3d_torchvision_compat.py`` and a ``.pth`` file into
site-packages (so every interpreter of this environment applies the fix before torchvision is
imported) and checks that torchvision, lightning, timm and torchmetrics now import.
"""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = "import torchvision, lightning, timm, torchmetrics"


def imports_ok() -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr.strip().splitlines()[
        -1:
    ] and proc.stderr.strip().splitlines()[-1]


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    pth = site / "gp3d_torchvision_compat.pth"
    if not pth.exists():
        ok, _ = imports_ok()
        if ok:
            print("torchvision imports cleanly: no compatibility hook needed")
            return 0
        shutil.copy(HERE / "gp3d_torchvision_compat.py", site / "gp3d_torchvision_compat.py")
        pth.write_text("import gp3d_torchvision_compat; gp3d_torchvision_compat.install()\n")
        print(f"installed the torchvision compatibility hook into {site}")
    else:  # keep the installed copy current
        shutil.copy(HERE / "gp3d_torchvision_compat.py", site / "gp3d_torchvision_compat.py")
    ok, err = imports_ok()
    if not ok:
        print(f"the stack still does not import after the hook: {err}", file=sys.stderr)
        return 1
    print("torchvision / lightning / timm / torchmetrics import OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
