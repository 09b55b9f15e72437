"""deploy.images: the one list_images (file, folder, list file) and distinct output names."""

from __future__ import annotations

import pytest

from deploy.images import ImageListError, list_images, output_names


@pytest.fixture()
def tree(tmp_path):
    for rel in ("a/x.png", "b/x.png", "b/y.png", "b/y.jpg", "b/notes.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    return tmp_path


def test_folder_is_searched_recursively_and_names_keep_subfolders(tree):
    images = list_images(tree)
    assert [p.relative_to(tree).as_posix() for p in images] == [
        "a/x.png", "b/x.png", "b/y.jpg", "b/y.png"
    ]  # fmt: skip
    names = output_names(images)
    assert sorted(names.values()) == ["a/x", "b/x", "b/y_jpg", "b/y_png"]
    assert len(set(names.values())) == len(images)  # nothing overwrites anything


def test_list_file_takes_the_first_column_relative_to_itself(tree, monkeypatch):
    (tree / "val.txt").write_text("# comment\na/x.png labels/x.png\n\nb/y.jpg\n")
    monkeypatch.chdir(tree.parent)
    assert list_images(tree / "val.txt") == [tree / "a/x.png", tree / "b/y.jpg"]


def test_bad_paths_name_the_file_and_line(tree):
    (tree / "bad.txt").write_text("a/x.png\nmissing.png\n")
    with pytest.raises(ImageListError, match=r"bad.txt:2: image missing.png does not exist"):
        list_images(tree / "bad.txt")
    with pytest.raises(ImageListError, match="neither an image"):
        list_images(tree / "nothing")
    (tree / "empty").mkdir()
    with pytest.raises(ImageListError, match="no images"):
        list_images(tree / "empty")


def test_a_single_image_is_named_by_its_stem(tree):
    assert output_names([tree / "a/x.png"]) == {tree / "a/x.png": "x"}
