"""The kit's machinery, apart from the lessons' core: notebook runs and their folders (course, runs),
reports and sweeps, the benchmark, the commands (`cifar-lab train|fast|sweep|report|bench|jpeg|colab`),
synthetic data for tests and quick mode, and the exercises' checks. It imports the core; never the reverse.
"""
from . import reference  # noqa: F401  (adds the reference reports' recipes to cifar_lab.recipes.RECIPES)
