"""The package's layers: the core imports nothing of the training or experiment stack."""
import subprocess
import sys


def test_import_vadd_loads_no_training_or_plotting_stack():
    code = ("import vadd, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'omegaconf', 'hydra', 'lightning', 'matplotlib', 'sklearn', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
