"""`grpo.md` and `grpo.png`: what a GRPO run did, step by step, from the trainer's own log history.

Per logged step: the weighted reward and each component's mean, the KL to the starting policy, the
answer length, and the share of groups whose answers all scored the same (those give no learning
signal: every advantage is zero). Dev evaluations beside them; the best one is the adapter kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = (("reward", "reward"), ("kl", "KL"), ("completions/mean_length", "answer tokens"),
           ("frac_reward_zero_std", "groups without signal"), ("step_time", "step s"),
           ("generation_time", "sampling s"))


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def step_rows(history: list[dict[str, Any]], rewards: list[str]) -> list[dict[str, Any]]:
    rows = []
    for entry in history:
        if "reward" not in entry:
            continue
        row = {"step": entry.get("step")}
        row.update({label: entry.get(key) for key, label in COLUMNS})
        row.update({name: entry.get(f"rewards/{name}/mean") for name in rewards})
        rows.append(row)
    return rows


def dev_rows(history: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    return [(e["step"], e[f"eval_{metric}"]) for e in history if f"eval_{metric}" in e]


def dev_line(dev: list[tuple[int, float]], metric: str) -> str:
    """The dev headline: the starting adapter's score (step 0, evaluated before any update), the last, the best
    trained step (the adapter kept) and its lift over the start; said plainly when no step beat the start."""
    start = dev[0][1] if dev[0][0] == 0 else None
    trained = [d for d in dev if d[0] > 0] or dev
    best = max(trained, key=lambda d: d[1])
    line = (f"Dev {metric}: " + (f"{start:.3f} before training -> " if start is not None else "")
            + f"{trained[-1][1]:.3f} at step {trained[-1][0]}; best {best[1]:.3f} at step {best[0]} (the adapter kept)")
    if start is None:
        return line + "."
    if best[1] <= start:
        return line + f": no trained step beat the start ({start:.3f}); the starting adapter is the better one."
    return line + f", {best[1] - start:+.3f} over the start."


def plot(path: Path, steps: list[dict[str, Any]], dev: list[tuple[int, float]], rewards: list[str], metric: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = [r["step"] for r in steps]
    for name in ["reward", *rewards]:
        left.plot(x, [r[name] for r in steps], label="weighted" if name == "reward" else name)
    left.set(xlabel="step", ylabel="mean reward", title="rewards per logged step")
    left.legend(fontsize=8)
    right.plot([s for s, _ in dev], [v for _, v in dev], marker="o", color="C3", label=f"dev {metric}")
    right.plot(x, [r["groups without signal"] for r in steps], color="C7", label="groups without signal")
    right.set(xlabel="step", ylim=(0, 1.02), title="dev and learning signal")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(out: Path, history: list[dict[str, Any]], cfg) -> Path:
    rewards, metric = list(cfg.rl.rewards), cfg.optim.metric_for_best
    steps, dev = step_rows(history, rewards), dev_rows(history, metric)
    headers = ["step", *[label for _, label in COLUMNS], *rewards]
    rl = cfg.rl
    lines = ["# GRPO run", "",
             f"Group of {rl.num_generations} answers per prompt at temperature {rl.temperature}"
             + (f", top_p {rl.top_p}" if rl.top_p < 1 else "") + ", KL coefficient "
             f"{rl.beta}, loss {rl.loss_type}" + (", the reasoning blocks credited (not the answers)"
                                                  if rl.credit == "reasoning" else "") + "; rewards (weight): "
             + ", ".join(f"{name} ({weight})" for name, weight in rl.rewards.items()) + ".",
             f"Started from {cfg.lora.init_adapter or 'a fresh LoRA on the base model'} ({cfg.model.model}).", ""]
    if dev:
        lines += [dev_line(dev, metric), ""]
    if steps:
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(_fmt(row[h]) for h in headers) + " |" for row in steps]
        plot(out / "grpo.png", steps, dev, rewards, metric)
        lines += ["", "![rewards and dev](grpo.png)"]
    else:
        lines.append("No training step was logged (lower logging_steps).")
    if dev:
        lines += ["", "| step | dev " + metric + " |", "|---|---|", *[f"| {s} | {v:.3f} |" for s, v in dev]]
    path = out / "grpo.md"
    path.write_text("\n".join(lines) + "\n")
    return path
