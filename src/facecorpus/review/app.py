"""The reviewer's terminal UI (Textual): one item at a time, image and facts on the left, QA on the right.

Every key that changes a verdict writes to the reviewer's log first (see `verdicts.VerdictLog`), then
redraws; quitting needs no save.
"""

from __future__ import annotations

import sys

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Footer, Input, Static

from ..records import Sample
from .picture import HalfBlockImage, annotated_image, graphics_escape, graphics_protocol, open_in_viewer
from .queue import INFORMATIONAL_FLAGS, ReviewItem
from .verdicts import ITEM_TARGET, VerdictLog, qa_target

VERDICT_MARK = {"accept": ("✔ accepted", "bold green"), "reject": ("✘ rejected", "bold red"), "flag": ("⚑ flagged", "bold yellow")}

HELP = """\
[b]facecorpus review[/b] — judge each QA pair, or the whole item

  [b]a[/b] / [b]r[/b] / [b]f[/b]     accept / reject / flag the selected QA pair
  [b]A[/b] / [b]R[/b] / [b]F[/b]     accept / reject / flag the whole item (then next item)
  [b]j[/b] [b]k[/b]  ↓ ↑     select the next / previous QA pair
  [b]space[/b] [b]l[/b] →    next item          [b]h[/b] ←  previous item
  [b]u[/b]           undo the last verdict or note (also from earlier sessions)
  [b]n[/b]           add a free-text note to the item
  [b]o[/b]           open the image (face boxes drawn) in the system viewer
  [b]g[/b]           show the image at full resolution (kitty / iTerm2 graphics terminals)
  [b]?[/b]           this help           [b]q[/b]  quit (every verdict is already saved)

For a reviewed reject, [b]accept[/b] means the rejection was right, [b]reject[/b] that it was wrong.
Face boxes: red = the primary face, yellow = other faces; cyan dots = landmarks.
Attributes: [red]red rows[/red] are label/model disagreements.

Press any key to close."""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = "HelpScreen { align: center middle; } #help { width: 84; height: auto; border: round $accent; padding: 1 2; background: $surface; }"

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")

    def on_key(self, event) -> None:  # noqa: ANN001 - any key closes help
        event.stop()
        self.dismiss(None)


class NoteScreen(ModalScreen[str | None]):
    DEFAULT_CSS = "NoteScreen { align: center middle; } #note-box { width: 80; height: auto; border: round $accent; padding: 1 2; background: $surface; }"
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Static("Note for this item (Enter saves, Esc cancels):")
            yield Input(placeholder="e.g. answer invents freckles", id="note-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ImagePane(Widget):
    """The item's image as half-blocks, refitted whenever the pane changes size."""

    DEFAULT_CSS = "ImagePane { height: 1fr; }"

    def __init__(self, **kw) -> None:  # noqa: ANN003
        super().__init__(**kw)
        self.picture = None
        self.message = ""

    def show(self, picture, message: str = "") -> None:  # noqa: ANN001 - PIL image or None
        self.picture, self.message = picture, message
        self.refresh()

    def render(self):  # noqa: ANN201 - a Rich renderable
        if self.picture is None:
            return Text(self.message or "no image", style="dim")
        return HalfBlockImage(self.picture, max_height=max(1, self.content_size.height))


def attributes_table(sample: Sample) -> Table:
    """Attributes with value, source and confidence; a label/model disagreement is a red row."""
    conflicts = {c.attribute: c for c in sample.attribute_conflicts}
    t = Table(title="attributes", title_justify="left", expand=True, show_edge=False, pad_edge=False)
    for col in ("name", "value", "source", "conf."):
        t.add_column(col, overflow="fold")
    for name, a in sorted(sample.attributes.items()):
        conf = "" if a.confidence is None else f"{a.confidence:.2f}"
        c = conflicts.get(name)
        style = "bold red" if c else ("cyan" if a.source == "label" else "")
        t.add_row(name, str(a.value), a.source, conf, style=style)
        if c:
            mc = "" if c.confidence is None else f"{c.confidence:.2f}"
            t.add_row("", f"≠ {c.model_value}", c.model, mc, style="red")
    for name, c in sorted(conflicts.items()):
        if name not in sample.attributes:
            t.add_row(name, f"{c.label_value} ≠ {c.model_value}", c.model, "", style="bold red")
    return t


def sample_facts(sample: Sample) -> Text:
    s = sample.source
    face = sample.faces[sample.primary_face] if sample.primary_face is not None and sample.faces else None
    lines = [
        f"{sample.key}  ·  {s.dataset} {s.id}" + (f" ({s.split})" if s.split else ""),
        f"{sample.image.width}×{sample.image.height} px · {len(sample.faces)} face(s) · generator "
        f"{sample.provenance.generator}" + (f" / {sample.provenance.llm_model}" if sample.provenance.llm_model else ""),
    ]
    if face is not None:
        pose = f" · pose yaw {face.pose.yaw:.0f}° pitch {face.pose.pitch:.0f}° roll {face.pose.roll:.0f}°" if face.pose else ""
        expr = f" · expression {face.expression.label} ({face.expression.confidence:.2f})" if face.expression else ""
        lines.append(f"face score {face.score:.2f}{pose}{expr}")
    text = Text("\n".join(lines))
    real_flags = [f for f in sample.flags if not f.startswith(INFORMATIONAL_FLAGS)]
    if real_flags:
        text.append("\nflags: " + ", ".join(real_flags), style="bold yellow")
    return text


class ReviewApp(App[None]):
    """Judge a queue of items; verdicts go to `verdict_log` as they are given."""

    TITLE = "facecorpus review"
    CSS = """
    #progress { height: 1; background: $boost; padding: 0 1; }
    #left { width: 45%; padding: 0 1; }
    #facts { height: auto; }
    #attrs { height: auto; max-height: 40%; }
    #right { width: 55%; padding: 0 1; }
    #caption { margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("a", "judge_qa('accept')", "accept QA"),
        Binding("r", "judge_qa('reject')", "reject QA"),
        Binding("f", "judge_qa('flag')", "flag QA"),
        Binding("A", "judge_item('accept')", "accept all"),
        Binding("R", "judge_item('reject')", "reject all"),
        Binding("F", "judge_item('flag')", "flag all", show=False),
        Binding("j,down", "move_qa(1)", "next QA", show=False),
        Binding("k,up", "move_qa(-1)", "prev QA", show=False),
        Binding("space,l,right", "move_item(1)", "next"),
        Binding("h,left", "move_item(-1)", "prev"),
        Binding("u", "undo", "undo"),
        Binding("n", "note", "note"),
        Binding("o", "open_viewer", "open image", show=False),
        Binding("g", "graphics", "full image", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, items: list[ReviewItem], log: VerdictLog, start: int | None = None) -> None:
        super().__init__()
        self.items = items
        self.verdict_log = log
        self.index = self._first_unjudged() if start is None else start
        self.qa_cursor = 0
        self.judged_this_session = 0

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal():
            with Vertical(id="left"):
                yield ImagePane(id="image")
                yield Static(id="facts")
                yield Static(id="attrs")
            with VerticalScroll(id="right"):
                yield Static(id="caption")
                yield Static(id="qa")
                yield Static(id="notes")
        yield Footer()

    def on_mount(self) -> None:
        self.show_item()
        if all(self.verdict_log.state.touched(i.id) for i in self.items):
            self.notify("every item in this queue has a verdict from you; you can revise them")

    def _first_unjudged(self) -> int:
        return next((n for n, it in enumerate(self.items) if not self.verdict_log.state.touched(it.id)), 0)

    @property
    def item(self) -> ReviewItem:
        return self.items[self.index]

    # -- drawing ----------------------------------------------------------------------------------
    def show_item(self) -> None:
        """Draw the current item from scratch (image, facts, attributes, caption, QA, notes)."""
        it = self.item
        image = self.query_one("#image", ImagePane)
        if it.sample is not None and it.jpeg:
            image.show(annotated_image(it.jpeg, it.sample))
            self.query_one("#facts", Static).update(sample_facts(it.sample))
            self.query_one("#attrs", Static).update(attributes_table(it.sample))
            self.query_one("#caption", Static).update(Group(Text("caption", style="bold"), Text(it.sample.caption)))
        elif it.reject is not None:
            r = it.reject
            image.show(None, f"rejected input: no image is stored for rejects\n\n{r.dataset or ''} {r.source_id}")
            self.query_one("#facts", Static).update(
                Text(f"stage {r.stage} · reason {r.reason} · retryable {'yes' if r.retryable else 'no'}")
            )
            self.query_one("#attrs", Static).update(Text(r.url or "", style="dim"))
            self.query_one("#caption", Static).update(Group(Text("detail", style="bold"), Text(r.detail)))
        self.refresh_verdicts()

    def refresh_verdicts(self) -> None:
        """Redraw what verdicts change: the progress line, the QA list marks, the notes."""
        it, state = self.item, self.verdict_log.state
        done = sum(1 for i in self.items if state.touched(i.id))
        item_v = state.item_verdict(it.id)
        item_mark = f" · item {VERDICT_MARK[item_v][0]}" if item_v else ""
        self.query_one("#progress", Static).update(
            f"{self.verdict_log.reviewer} · item {self.index + 1}/{len(self.items)} · judged {done}/{len(self.items)} items"
            f" · {self.judged_this_session} verdicts this session{item_mark} · ? help"
        )
        qa = Text()
        if it.sample is not None:
            for pos, i in enumerate(it.qa_indexes):
                q = it.sample.qa[i]
                selected = pos == self.qa_cursor
                v = state.qa_verdict(it.id, i)
                own = state.verdicts.get((it.id, qa_target(i)))
                mark, style = VERDICT_MARK.get(v, ("· unjudged", "dim"))
                if v and not own:
                    mark += " (item)"
                qa.append(("▶ " if selected else "  ") + f"[{q.category}] ", style="bold reverse" if selected else "bold")
                qa.append(f"{mark}\n", style=style)
                qa.append(f"  Q: {q.question}\n", style="italic")
                qa.append(f"  A: {q.answer}\n\n")
        elif it.reject is not None:
            v = state.item_verdict(it.id)
            mark, style = VERDICT_MARK.get(v, ("· unjudged", "dim"))
            qa.append("rejection verdict: ", style="bold")
            qa.append(mark, style=style)
        self.query_one("#qa", Static).update(qa)
        notes = state.notes.get(it.id, [])
        self.query_one("#notes", Static).update(
            Text("notes:\n" + "\n".join(f"  • {n}" for n in notes), style="magenta") if notes else Text("")
        )

    # -- actions ----------------------------------------------------------------------------------
    def action_judge_qa(self, verdict: str) -> None:
        it = self.item
        if it.sample is None:  # a reject has no QA pairs: judge the item
            self.action_judge_item(verdict)
            return
        if not it.qa_indexes:
            self.notify("no QA pairs to judge here", severity="warning")
            return
        i = it.qa_indexes[self.qa_cursor]
        self.verdict_log.judge(it.id, qa_target(i), verdict, category=it.sample.qa[i].category)
        self.judged_this_session += 1
        self.qa_cursor = min(self.qa_cursor + 1, len(it.qa_indexes) - 1)
        self.refresh_verdicts()

    def action_judge_item(self, verdict: str) -> None:
        self.verdict_log.judge(self.item.id, ITEM_TARGET, verdict)
        self.judged_this_session += 1
        self.action_move_item(1)

    def action_move_qa(self, step: int) -> None:
        n = len(self.item.qa_indexes)
        if n:
            self.qa_cursor = (self.qa_cursor + step) % n
            self.refresh_verdicts()

    def action_move_item(self, step: int) -> None:
        new = self.index + step
        if not 0 <= new < len(self.items):
            self.notify("last item" if step > 0 else "first item")
            self.refresh_verdicts()
            return
        self.index, self.qa_cursor = new, 0
        self.show_item()

    def action_undo(self) -> None:
        undone = self.verdict_log.undo()
        if undone is None:
            self.notify("nothing to undo")
            return
        self.judged_this_session = max(0, self.judged_this_session - (undone.action == "judge"))
        what = f"{undone.verdict} on {undone.target}" if undone.action == "judge" else "note"
        # go back to the item the undone event was about, so the reviewer sees the change
        pos = next((n for n, i in enumerate(self.items) if i.id == undone.item), None)
        if pos is not None and pos != self.index:
            self.index, self.qa_cursor = pos, 0
            self.show_item()
        else:
            self.refresh_verdicts()
        self.notify(f"undone: {what}")

    def action_note(self) -> None:
        def save(text: str | None) -> None:
            if text:
                self.verdict_log.note(self.item.id, text)
                self.refresh_verdicts()

        self.push_screen(NoteScreen(), save)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_open_viewer(self) -> None:
        it = self.item
        if it.jpeg is None:
            self.notify("this item has no image", severity="warning")
            return
        try:
            path = open_in_viewer(annotated_image(it.jpeg, it.sample), it.id)
        except OSError as e:
            self.notify(f"cannot start the image viewer: {e.strerror or e}; set FACECORPUS_VIEWER", severity="error")
            return
        self.notify(f"opened {path}")

    def action_graphics(self) -> None:
        it = self.item
        protocol = graphics_protocol()
        if it.jpeg is None or protocol is None:
            self.notify("this terminal announces no graphics protocol (kitty / iTerm2); press o to open a viewer")
            return
        image = annotated_image(it.jpeg, it.sample)
        try:
            with self.suspend():
                sys.stdout.write("\x1b[2J\x1b[H" + graphics_escape(image, protocol) + "\n\nPress Enter to go back. ")
                sys.stdout.flush()
                input()
        except Exception as e:  # noqa: BLE001 - e.g. SuspendNotSupported in a headless or web driver
            self.notify(f"cannot leave the UI to draw the image here ({e.__class__.__name__}); press o instead")
