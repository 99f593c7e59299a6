"""Progress: plain lines at a bounded rate off a terminal, tqdm bars on one."""
from __future__ import annotations

import io

from tqdm import tqdm

from stt2v_ray.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_batch(progress: Progress, units: dict[str, int]) -> None:
    vp = progress.video("v0", "t2v, 300 frames", {k: n for k, n in units.items() if k != "frames out"})
    for stage, n in units.items():
        for k in range(n):
            vp.unit(stage, f"chunk {k // 4} step {k % 4}" if stage == "enhance" else f"{stage} {k}")
    vp.unit("enhance", "decode frames 0-7")  # work the enhancer's chunk x step total does not count
    vp.finish("ok", "videos/v0.mp4")
    progress.skipped("v1", "already rendered")
    progress.close()


def test_plain_lines_are_bounded_and_end_with_the_counts():
    out = io.StringIO()  # not a TTY: plain lines
    progress = Progress(total_videos=2, stream=out, interval=3600)
    assert progress.mode == "plain"
    run_batch(progress, {"base": 400, "enhance": 2000, "frames out": 500})
    lines = out.getvalue().splitlines()
    # start, one line as each counted stage ends, the end line, two overall lines, the skipped line
    assert len(lines) == 7, lines
    assert "\r" not in out.getvalue()
    assert lines[1] == f"    v0: base 400/400 | ETA {lines[1].rsplit('ETA ', 1)[1]}"
    assert "enhance 2000/2000" in lines[2] and "ETA 00:00:00" in lines[2]
    assert "v0: ok in" in lines[3] and "base 400/400 | enhance 2000/2000 | frames out 500" in lines[3]
    assert "videos 1/2 done" in lines[4] and "videos/min" in lines[4] and "ETA" in lines[4]
    assert lines[-1].startswith("  overall: videos 2/2 done") and lines[-1].endswith("ETA 00:00:00")


def test_plain_lines_at_most_one_per_interval():
    out = io.StringIO()
    progress = Progress(total_videos=1, stream=out, interval=0.0)  # every unit may print: 0 s apart
    vp = progress.video("v", "x", {"base": 3})
    for k in range(3):
        vp.unit("base", f"chunk {k}")
    assert len(out.getvalue().splitlines()) == 1 + 3


def test_terminal_gets_tqdm_bars():
    out = Terminal()
    progress = Progress(total_videos=2, stream=out)
    assert progress.mode == "tty" and isinstance(progress.bar, tqdm)
    vp = progress.video("v0", "t2v", {"base": 4, "enhance": 8})
    assert isinstance(vp.bar, tqdm) and vp.bar.total == 12 and vp.bar.desc == "v0"
    for k in range(4):
        vp.unit("base", f"chunk {k}")
    vp.reach("enhance", 5)  # a count read from a remote enhancer
    vp.unit("frames out", "piece 0")  # shown, not part of the bar's total
    assert vp.bar.n == 9
    vp.finish("ok")
    assert progress.bar.n == 1 and vp.bar is None
    progress.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "videos:" in text and "1/2" in text
    assert "[1/2] v0: t2v" in text and "v0: ok in" in text  # messages written above the bars


def test_quiet_prints_nothing():
    out = Terminal()
    progress = Progress(total_videos=1, stream=out, quiet=True)
    run_batch(progress, {"base": 3})
    assert out.getvalue() == "" and progress.bar is None
