"""The reviewer UI, driven headless with Textual's pilot, on a copy of the demo output."""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from facecorpus.records import AttributeConflict, Face, FaceBox, Sample
from facecorpus.review.app import HelpScreen, NoteScreen, ReviewApp, attributes_table
from facecorpus.review.cli import open_session
from facecorpus.review.picture import (
    PRIMARY_COLOUR,
    HalfBlockImage,
    annotated_image,
    graphics_protocol,
    iterm_escape,
    kitty_escape,
    viewer_command,
)
from facecorpus.review.queue import QueueOptions
from facecorpus.review.verdicts import read_log


@pytest.fixture()
def out(demo_output: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "out"
    shutil.copytree(demo_output, dest)
    return dest


def progress(app: ReviewApp) -> str:
    return str(app.query_one("#progress").render())


def run(coro) -> None:  # noqa: ANN001
    asyncio.run(coro)


def test_judge_undo_note_help_and_navigation(out: Path) -> None:
    # labelled FairFace samples: the templates generator writes all three demo categories for them
    items, log = open_session(out, "alice", QueueOptions(sample=4, seed=1, where=("source.split=val",)))
    first, second = items[0], items[1]

    async def scenario() -> None:
        app = ReviewApp(items, log)
        async with app.run_test(size=(140, 45)) as pilot:
            assert "item 1/4" in progress(app) and "judged 0/4" in progress(app)
            q = first.qa_indexes
            assert len(q) >= 3  # the demo asks three categories per sample
            await pilot.press("a", "f")  # QA pairs 0, 1; the cursor moves down after each
            state = log.state
            assert [state.qa_verdict(first.id, i) for i in q[:3]] == ["accept", "flag", None]
            assert "judged 1/4" in progress(app) and "2 verdicts this session" in progress(app)
            await pilot.press("k", "r")  # back up to pair 1 and change its verdict
            assert log.state.qa_verdict(first.id, q[1]) == "reject"
            await pilot.press("A")  # accept the whole item → next item
            assert app.item.id == second.id and log.state.item_verdict(first.id) == "accept"
            assert log.state.qa_verdict(first.id, q[1]) == "reject"  # a judged pair keeps its own verdict
            assert log.state.qa_verdict(first.id, q[2]) == "accept"  # an unjudged pair takes the item verdict
            await pilot.press("u")  # undo jumps back to the item whose verdict was undone
            assert app.item.id == first.id and log.state.item_verdict(first.id) is None
            await pilot.press("n")
            assert isinstance(app.screen, NoteScreen)
            await pilot.press(*"blurry crop", "enter")
            assert log.state.notes[first.id] == ["blurry crop"]
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("x")  # any key closes help
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("space", "space", "h")
            assert app.index == 1
            await pilot.press("q")

    run(scenario())
    log.close()
    actions = [e.action for e in read_log(out / "reviews" / "alice.jsonl").events]
    assert actions == ["open", "judge", "judge", "judge", "judge", "undo", "note"]


def test_reopening_resumes_the_same_queue_at_the_first_unjudged_item(out: Path) -> None:
    items, log = open_session(out, "bob", QueueOptions(sample=5, seed=2, stratify=("labels.age",)))

    async def judge_two() -> None:
        app = ReviewApp(items, log)
        async with app.run_test() as pilot:
            await pilot.press("A", "F")

    run(judge_two())
    log.close()
    again, log2 = open_session(out, "bob", None)  # no sampling options: the last queue comes back
    assert [i.id for i in again] == [i.id for i in items]

    async def check() -> None:
        app = ReviewApp(again, log2)
        async with app.run_test() as pilot:
            assert app.index == 2 and "judged 2/5" in progress(app)
            await pilot.press("q")

    run(check())
    log2.close()


def test_reviewing_rejects(out: Path) -> None:
    items, log = open_session(out, "carol", QueueOptions(rejects=True, reasons=("unsafe_path", "not_image")))
    assert all(i.is_reject for i in items)

    async def scenario() -> None:
        app = ReviewApp(items, log)
        async with app.run_test() as pilot:
            assert "rejected input" in str(app.query_one("#image").render())
            await pilot.press("a")  # a reject has no QA pairs: the verdict is on the item
            assert log.state.item_verdict(items[0].id) == "accept" and app.index == 1

    run(scenario())
    log.close()


def test_open_in_viewer_uses_the_configured_command(out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "seen.png"
    monkeypatch.setenv("FACECORPUS_VIEWER", f"cp {{path}} {seen}")
    items, log = open_session(out, "dan", QueueOptions(sample=1))

    async def scenario() -> None:
        app = ReviewApp(items, log)
        async with app.run_test() as pilot:
            await pilot.press("o")
            await pilot.press("g")  # no graphics terminal announced here: a notice, the UI stays up
            assert app.is_running

    run(scenario())
    log.close()
    deadline = time.time() + 10
    while not seen.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert Image.open(seen).size == (items[0].sample.image.width, items[0].sample.image.height)


def _with_faces(sample: Sample) -> Sample:
    w, h = sample.image.width, sample.image.height
    faces = [
        Face(box=FaceBox(x1=w * 0.2, y1=h * 0.2, x2=w * 0.6, y2=h * 0.7), score=0.99, detector="test",
             landmarks5=[(w * 0.3, h * 0.35), (w * 0.5, h * 0.35), (w * 0.4, h * 0.45), (w * 0.32, h * 0.55), (w * 0.48, h * 0.55)]),
        Face(box=FaceBox(x1=w * 0.7, y1=h * 0.1, x2=w * 0.9, y2=h * 0.3), score=0.9, detector="test"),
    ]
    conflict = AttributeConflict(attribute="gender", label_value="male", model_value="female", model="model:test", confidence=0.81)
    return sample.model_copy(update={"faces": faces, "primary_face": 0, "attribute_conflicts": [conflict]})


def test_face_boxes_are_drawn_and_conflicts_highlighted(out: Path) -> None:
    items, log = open_session(out, "erin", QueueOptions(where=("labels.gender=male",), sample=1))
    log.close()
    sample = _with_faces(items[0].sample)
    plain = Image.open(io.BytesIO(items[0].jpeg)).convert("RGB")
    drawn = annotated_image(items[0].jpeg, sample)
    b = sample.faces[0].box
    x, y = int((b.x1 + b.x2) / 2), int(b.y1)  # middle of the top edge of the primary face box
    assert drawn.getpixel((x, y)) == PRIMARY_COLOUR and plain.getpixel((x, y)) != PRIMARY_COLOUR
    console = Console(width=100, record=True, color_system="truecolor", file=io.StringIO())
    console.print(attributes_table(sample))
    text = console.export_text(clear=False)
    assert "≠ female" in text and "model:test" in text and "0.81" in text
    assert "\x1b[1;31m" in console.export_text(styles=True)  # the conflicting label row is bold red


def test_half_block_rendering_fits_and_keeps_aspect() -> None:
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 50, 200, 100))  # bottom half blue
    console = Console(width=40, record=True, color_system="truecolor", file=io.StringIO())
    console.print(HalfBlockImage(img))
    lines = console.export_text(clear=False).splitlines()
    assert len(lines) == 10 and all(line == "▀" * 40 for line in lines)  # 200x100 → 40 cols x 10 rows
    styled = console.export_text(styles=True)
    assert "38;2;255;0;0" in styled and "48;2;0;0;255" in styled
    assert HalfBlockImage(img).cell_size(80, 5) == (20, 5)  # height-limited: width shrinks to match


def test_graphics_protocol_detection_and_escapes() -> None:
    assert graphics_protocol({"TERM": "xterm-kitty"}) == "kitty"
    assert graphics_protocol({"TERM_PROGRAM": "WezTerm"}) == "iterm"
    assert graphics_protocol({"TERM": "xterm-256color"}) is None
    img = Image.effect_noise((120, 120), 60).convert("RGB")  # noisy: the PNG needs several chunks
    k = kitty_escape(img)
    chunks = k.split("\x1b\\")[:-1]
    assert len(chunks) > 1 and chunks[0].startswith("\x1b_Ga=T,f=100,m=1;") and chunks[-1].startswith("\x1b_Gm=0;")
    assert all(len(c.split(";", 1)[1]) <= 4096 for c in chunks)
    assert iterm_escape(img).startswith("\x1b]1337;File=inline=1;size=")


def test_viewer_command_choice(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    assert viewer_command(p, {"FACECORPUS_VIEWER": "feh --scale"}) == ["feh", "--scale", str(p)]
    assert viewer_command(p, {"FACECORPUS_VIEWER": "cp {path} /tmp/y"}) == ["cp", str(p), "/tmp/y"]
    assert viewer_command(p, {})[-1] == str(p)
