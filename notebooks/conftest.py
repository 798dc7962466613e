"""pytest --nbval notebooks/ runs every notebook in quick mode (synthetic data, 1 epoch), offline.

Set CIFAR_LAB_QUICK=0 to check them on the real data instead (slow).
"""
import os

os.environ.setdefault("CIFAR_LAB_QUICK", "1")
