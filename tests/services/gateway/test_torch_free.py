import subprocess
import sys


def test_gateway_process_never_imports_torch():
    code = (
        "import sys, services.gateway.app, realrag.cli; "
        "realrag.cli.build_parser(with_plugins=False); "
        "heavy = [m for m in ('torch', 'diffusers', 'open_clip', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
