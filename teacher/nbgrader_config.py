"""nbgrader's settings for the course (run nbgrader's commands in this folder; docs/teachers.md shows them)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = "cifar_lab"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# A blank answer must still run: papermill, nbval and a student's "Run all" execute what ships.
c.ClearSolutions.code_stub = {"python": "# YOUR ANSWER HERE (replace None above)"}
# Grading re-executes every notebook: in quick mode (synthetic data, one short epoch), so a class grades in minutes.
os.environ.setdefault("CIFAR_LAB_QUICK", "1")
c.Execute.timeout = 1800  # seconds per cell (nbgrader's default, 30, is too short for a training cell)
# `nbgrader zip_collect` takes the student id from a downloaded file's name: alice_02_cnn.ipynb -> alice
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[A-Za-z0-9.-]+)_(?P<file_id>\d\d_[^/]+\.ipynb)$"
c.ZipCollectApp.strict = True
