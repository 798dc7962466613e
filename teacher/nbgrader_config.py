"""nbgrader's settings for the course (run nbgrader's commands in this folder; docs/teachers.md shows them)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = "cifar_lab"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# A teacher's copy run in place leaves its results folders beside it: never copied into releases or submissions.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "outputs", "runs"]
# A blank answer must still run: papermill, nbval and a student's "Run all" execute what ships.
c.ClearSolutions.code_stub = {"python": "# YOUR ANSWER HERE (replace None above)"}
# Grading reruns every notebook in quick mode (synthetic data, one short epoch), so a class grades in minutes;
# set here, not taken from the shell, so that a CIFAR_LAB_QUICK=0 left in it cannot make grading train for hours.
os.environ["CIFAR_LAB_QUICK"] = "1"
c.Execute.timeout = 1800  # seconds per cell (nbgrader's default, 30, is too short for a training cell)
# `nbgrader zip_collect` takes the student id from a downloaded file's name, everything before _NN_lesson.ipynb:
# alice_02_cnn.ipynb and alice_smith_02_cnn.ipynb give alice and alice_smith (either path separator).
c.FileNameCollectorPlugin.named_regexp = r"(?:.*[\\/])?(?P<student_id>[^\\/]+?)_(?P<file_id>\d\d_[a-z0-9_]+\.ipynb)$"
c.ZipCollectApp.strict = True
