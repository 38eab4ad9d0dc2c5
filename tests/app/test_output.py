"""Output directories: never replace what the tool did not write, and leave nothing behind,
not even after a run killed half-way."""

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path

import pytest

from sgdinfluence.app.output import MARKER, check_output, output_dir
from sgdinfluence.errors import OutputError


def result(path: Path, command: str = "cleanse", text: str = "first") -> Path:
    """A previous result of ``command`` at ``path``: two files, one in a sub-folder."""
    with output_dir(path, overwrite=True, command=command) as tmp:
        (tmp / "scores.csv").write_text(f"index,score\n0,{text}\n")
        (tmp / "images").mkdir()
        (tmp / "images" / "0.png").write_bytes(b"\x89PNG")
    return path


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_marker_records_the_command_and_each_files_size_and_hash(tmp_path):
    marker = json.loads((result(tmp_path / "r", "demo") / MARKER).read_text())
    content = b"index,score\n0,first\n"
    assert marker["command"] == "demo" and sorted(marker["written"]) == ["images/0.png",
                                                                        "scores.csv"]
    assert marker["written"]["scores.csv"] == {"size": len(content),
                                               "sha256": hashlib.sha256(content).hexdigest()}


def test_a_command_named_replaces_only_its_own_result(tmp_path):
    """The demo replaces a previous demo without being asked, and nothing else."""
    result(tmp_path / "demo", "demo")
    result(tmp_path / "demo", "demo", "second")  # overwrite="demo"-like: its own
    with output_dir(tmp_path / "demo", overwrite="demo") as tmp:
        (tmp / "scores.csv").write_text("third")
    assert (tmp_path / "demo" / "scores.csv").read_text() == "third"
    result(tmp_path / "cleansed", "cleanse")
    with pytest.raises(OutputError, match="holds a result of cleanse, which demo does not "
                                          "replace"):
        check_output(tmp_path / "cleansed", overwrite="demo")
    assert (tmp_path / "cleansed" / "scores.csv").read_text() == "index,score\n0,first\n"


def _empty_dir(out):
    (out / "mine").mkdir()
    return "mine/"


def _link_to_a_folder(out):
    (out.parent / "elsewhere").mkdir()
    (out / "data").symlink_to(out.parent / "elsewhere")
    return "data"


def _link_to_a_file(out):
    (out / "link").symlink_to("/etc/hostname")
    return "link"


def _edited(out):
    with open(out / "scores.csv", "a") as f:
        f.write("# my note\n")
    return "scores.csv (changed)"


def _listed_by_name(out):
    (out / "mine.txt").write_text("mine")
    marker = json.loads((out / MARKER).read_text())
    marker["written"]["mine.txt"] = {"size": 4, "sha256": "0" * 64}
    (out / MARKER).write_text(json.dumps(marker))
    return "mine.txt (changed)"


def _listed_file_replaced_by_a_link(out):
    (out / "scores.csv").unlink()
    (out / "scores.csv").symlink_to("/etc/hostname")
    return "scores.csv"


@pytest.mark.parametrize("users", [_empty_dir, _link_to_a_folder, _link_to_a_file, _edited,
                                   _listed_by_name, _listed_file_replaced_by_a_link])
def test_anything_of_the_users_in_a_previous_result_is_kept(tmp_path, users):
    out = result(tmp_path / "r")
    name = users(out)
    before = sorted((str(p.relative_to(out)), p.is_symlink()) for p in out.rglob("*"))
    with pytest.raises(OutputError, match=rf"did not write \({re.escape(name)}\)"):
        check_output(out, overwrite=True)
    with pytest.raises(OutputError), output_dir(out, overwrite=True):
        pass
    assert sorted((str(p.relative_to(out)), p.is_symlink()) for p in out.rglob("*")) == before


def test_a_refusal_names_five_paths_at_most(tmp_path):
    out = result(tmp_path / "r")
    for i in range(7):
        (out / f"mine{i}").mkdir()
    with pytest.raises(OutputError, match=r"\(mine0/, mine1/, mine2/, mine3/, mine4/, \.\.\.\)"):
        check_output(out, overwrite=True)


def test_a_result_of_an_older_version_is_not_replaced(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "scores.csv").write_text("edited, perhaps")
    (out / MARKER).write_text(json.dumps({"tool": "sgdinfluence", "written": ["scores.csv"]}))
    with pytest.raises(OutputError, match="older sgdinfluence, which did not record"):
        check_output(out, overwrite=True)


# --- a run killed half-way: the next run puts it right --------------------------------------

def crashed_while_replacing(out: Path, swapped: bool) -> None:
    """The state output_dir leaves when killed between (``swapped`` False) or just after
    (True) its two renames: the previous result moved aside, the new one beside it."""
    result(out, text="old")
    new = result(out.parent / "new", text="new")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    out.rename(old / out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.rmdir()
    new.rename(tmp)
    if swapped:
        tmp.rename(out)


def test_a_result_moved_aside_by_a_killed_run_is_restored(tmp_path):
    out = tmp_path / "r"
    crashed_while_replacing(out, swapped=False)
    assert not out.exists() and len(hidden(tmp_path)) == 2
    with pytest.warns(UserWarning, match=f"an interrupted run left {out} half-done: restored "
                                         "the previous result it had moved aside"):
        check_output(out, overwrite=True)
    assert (out / "scores.csv").read_text() == "index,score\n0,old\n"
    assert hidden(tmp_path) == []


def test_a_killed_runs_old_result_is_deleted_once_replaced(tmp_path):
    out = tmp_path / "r"
    crashed_while_replacing(out, swapped=True)
    with pytest.warns(UserWarning, match="deleted the previous result it had replaced"):
        result(out, text="next")
    assert (out / "scores.csv").read_text() == "index,score\n0,next\n"
    assert hidden(tmp_path) == []


def test_a_killed_runs_unfinished_output_is_deleted(tmp_path):
    tmp = Path(tempfile.mkdtemp(prefix=".r.", dir=tmp_path))
    (tmp / "scores.csv").write_text("half")
    with pytest.warns(UserWarning, match="deleted its unfinished output"):
        result(tmp_path / "r")
    assert hidden(tmp_path) == [] and (tmp_path / "r" / MARKER).is_file()


def test_a_killed_fill_of_an_empty_directory_is_finished(tmp_path):
    done = result(tmp_path / "done")
    out = tmp_path / "r"
    out.mkdir()
    tmp = Path(tempfile.mkdtemp(prefix=".r.", dir=tmp_path))
    for p in done.iterdir():  # the marker went first, then scores.csv; images/ still to go
        p.rename((out if p.name in (MARKER, "scores.csv") else tmp) / p.name)
    (tmp / MARKER).write_bytes((out / MARKER).read_bytes())
    with pytest.warns(UserWarning, match="finished writing the result it had left"):
        check_output(out, overwrite=True)
    assert (out / "images" / "0.png").read_bytes() == b"\x89PNG"
    assert hidden(tmp_path) == []
    check_output(out, overwrite=True)  # a complete result of ours


def test_the_folder_of_a_run_still_writing_is_left_alone(tmp_path):
    tmp = Path(tempfile.mkdtemp(prefix=".r.", dir=tmp_path))
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as output_dir holds it
    try:
        check_output(tmp_path / "r")
        assert hidden(tmp_path) == [tmp.name]
    finally:
        os.close(fd)


def test_no_other_outputs_folders_are_taken_for_leftovers(tmp_path):
    for name in (".r.x.abcdefgh", ".r.old.abcdefgh", ".rr.abcdefgh", ".r.abcdefghi"):
        (tmp_path / name).mkdir()
    (tmp_path / ".r.old.abcdefgh" / "notes").write_text("not a result moved aside")
    check_output(tmp_path / "r")
    assert len(hidden(tmp_path)) == 4


# --- an empty directory, a full disk, what is found before any work --------------------------

def test_an_empty_directory_is_written_into_in_place(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o1777)
    inode = out.stat().st_ino
    result(out)
    assert out.stat().st_ino == inode and stat.S_IMODE(out.stat().st_mode) == 0o1777
    assert (out / "images" / "0.png").is_file() and hidden(tmp_path) == []


def test_a_fill_that_fails_leaves_the_directory_empty(tmp_path, monkeypatch):
    out = tmp_path / "shared"
    out.mkdir()
    real = Path.rename

    def rename(self, target):
        if Path(target).name == "scores.csv":
            raise OSError(errno.EIO, "I/O error")
        return real(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="I/O error"):
        result(out)
    assert list(out.iterdir()) == [] and hidden(tmp_path) == []


def test_a_full_disk_names_the_output_and_what_to_do(tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OutputError, match=f"no space left on the device while writing "
                                          f"{tmp_path / 'r'}; free some space"), \
            output_dir(tmp_path / "r") as tmp:
        (tmp / "a.txt").write_text("x")
        full()
    assert list(tmp_path.iterdir()) == []


def test_a_link_to_nothing_above_the_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "results").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match=f"{tmp_path / 'results'} is a link to "
                                          f"{tmp_path / 'gone'}, which does not exist"):
        check_output(tmp_path / "results" / "r")


def test_a_read_only_previous_result_is_refused_before_any_work(tmp_path):
    out = result(tmp_path / "r")
    out.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=f"cannot be replaced: {out} is read-only"):
            check_output(out, overwrite=True)
    finally:
        out.chmod(0o755)
    (out / "scores.csv").chmod(0o444)
    with pytest.raises(OutputError, match="scores.csv is read-only"):
        check_output(out, overwrite=True)


def test_an_empty_path_is_refused():
    with pytest.raises(OutputError, match="empty path"):
        check_output("")
