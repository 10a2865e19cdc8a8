"""What a training run leaves for the learner to look at: loss.csv and loss.png."""
from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ("step", "tokens", "split", "loss", "lr", "tokens_per_s")


class RunLog:
    """Appends rows to `<out_dir>/loss.csv`; `plot()` draws train and validation curves.

    On resume, rows after the resumed step are dropped first so the curve never
    shows the abandoned tail of the interrupted run twice.
    """

    def __init__(self, out_dir: str | Path, resume_step: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "loss.csv"
        rows = self.rows() if resume_step is not None and self.csv_path.exists() else []
        kept: dict[tuple[str, str], dict] = {}
        for r in rows:  # an interrupted run's final evaluation may repeat a scheduled one
            if int(r["step"]) <= (resume_step or 0):
                kept.setdefault((r["step"], r["split"]), r)
        rows = list(kept.values())
        with self.csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)

    def log(self, step: int, tokens: int, split: str, loss: float, lr: float = float("nan"), tokens_per_s: float = float("nan")) -> None:
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writerow(
                {"step": step, "tokens": tokens, "split": split, "loss": f"{loss:.6f}", "lr": f"{lr:.6g}", "tokens_per_s": f"{tokens_per_s:.1f}"}
            )

    def rows(self) -> list[dict]:
        with self.csv_path.open(newline="") as f:
            return list(csv.DictReader(f))

    def plot(self, threshold: float | None = None, title: str = "TinyGPT pretraining") -> Path:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt

        rows = self.rows()
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for split, style in (("train", "-"), ("validation", "o-")):
            pts = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == split]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy loss (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        path = self.out_dir / "loss.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
