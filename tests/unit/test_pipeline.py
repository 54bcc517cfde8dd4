"""`expand_inputs`: what `callqa score DIR` picks up from a folder."""

from __future__ import annotations

import logging

from callqa.pipeline import expand_inputs


def test_folders_expand_to_every_audio_like_file_in_order(tmp_path, caplog):
    calls = tmp_path / "calls"
    (calls / "sub").mkdir(parents=True)
    for name in ["b.wav", "a.AIFF", "sub/c.flac", "voicemail.m4a", "notes.txt", "x.json"]:
        (calls / name).write_bytes(b"x")
    (calls / "dangling.wav").symlink_to(calls / "gone.wav")
    (calls / "folder.wav").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    single = tmp_path / "given.txt"
    with caplog.at_level(logging.WARNING):
        found = expand_inputs([single, calls, empty])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    # Files given by name are kept as given (they get an error line if they are not audio);
    # the m4a and the dangling link are listed so that they end with an error, not silently.
    assert names == [
        "given.txt", "calls/a.AIFF", "calls/b.wav", "calls/dangling.wav", "calls/sub/c.flac",
        "calls/voicemail.m4a",
    ]  # fmt: skip
    assert "no audio files" in caplog.text and "empty" in caplog.text
