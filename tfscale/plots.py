"""PNG pictures of a run, written by rank 0 into the workdir (matplotlib's Agg backend; no display, no TF).

  plan.png         learning rate and weight decay against epoch, collapse phases shaded, snapshots marked
  training.png     loss, train/validation top-1 and top-5, and global images/s over time (redrawn each epoch)
  eval.png         each snapshot's top-1/top-5 beside the Collapsed Ensemble's (tfscale.evaluate)
"""
import matplotlib

matplotlib.use("Agg")  # before pyplot: compute nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLLAPSE_SHADE = dict(color="tab:orange", alpha=0.12, lw=0)


def _shade_collapses(axis, plan):
  """Shades the epochs trained with scale/aspect augmentation off."""
  epochs = plan.boundaries / plan.steps_per_epoch
  for i, phase in enumerate(plan.phases):
    if phase["augment"] == "collapse":
      axis.axvspan(epochs[i], epochs[i + 1], **COLLAPSE_SHADE)


def plot_plan(plan, path: str, title: str = ""):
  """LR (scaled to the global batch) and weight decay per step, on an epoch axis."""
  epoch = np.arange(plan.total_steps) / plan.steps_per_epoch
  figure, (lr_axis, wd_axis) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), height_ratios=(3, 1.2))
  lr_axis.plot(epoch, plan.lr, color="tab:blue", lw=1.4)
  lr_axis.set_ylabel("learning rate")
  wd_axis.plot(epoch, plan.weight_decay, color="tab:green", lw=1.4, drawstyle="steps-post")
  wd_axis.set_ylabel("weight decay")
  wd_axis.set_xlabel("epoch")
  wd_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
  for axis in (lr_axis, wd_axis):
    _shade_collapses(axis, plan)
    axis.grid(alpha=0.3)
  for first, end, _ in plan.branches():
    lr_axis.axvspan(first / plan.steps_per_epoch, end / plan.steps_per_epoch, fill=False, hatch="//",
                    edgecolor="tab:orange", lw=0)
  for name, step in plan.snapshot_steps():
    lr_axis.axvline(step / plan.steps_per_epoch, color="tab:red", ls="--", lw=0.9)
    lr_axis.annotate(name, (step / plan.steps_per_epoch, plan.lr.max()), rotation=90, va="top", ha="right",
                     fontsize=8, color="tab:red")
  for i, phase in enumerate(plan.phases):
    lr_axis.annotate(phase["name"], (plan.boundaries[i] / plan.steps_per_epoch, 0), fontsize=7, rotation=90,
                     va="bottom", ha="left", color="0.35")
  resets = np.flatnonzero(plan.momentum_reset[1:]) + 1  # step 0 starts from zero velocity anyway
  lr_axis.plot(resets / plan.steps_per_epoch, plan.lr[resets], "v", color="tab:purple", ms=5, ls="none")
  lr_axis.set_title(title or f"phase plan: {plan.total_steps} steps, {plan.steps_per_epoch} steps/epoch "
                    "(shaded: augmentation collapsed; hatched: branches off the main line; dashed: snapshots; "
                    "▼ momentum reset)", fontsize=9)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def plot_training(rows: list, plan, path: str):
  """Curves of metrics.jsonl rows (one per epoch); collapse phases shaded as in plan.png."""
  if not rows:
    return None
  epoch = np.array([r["epoch"] for r in rows], float)
  column = lambda key: np.array([r.get(key, np.nan) for r in rows], float)
  figure, axes = plt.subplots(2, 2, figsize=(11, 7))
  loss_axis, top1_axis, top5_axis, speed_axis = axes.ravel()
  loss_axis.plot(epoch, column("loss"), "o-", ms=3, label="train loss")
  loss_axis.set_ylabel("loss")
  for axis, key in ((top1_axis, "top1"), (top5_axis, "top5")):
    axis.plot(epoch, 100 * column(key), "o-", ms=3, label=f"train {key} (augmented)")
    validated = ~np.isnan(column(f"val_{key}"))
    axis.plot(epoch[validated], 100 * column(f"val_{key}")[validated], "s-", ms=4, label=f"validation {key}")
    axis.set_ylabel(f"{key} %")
  for axis in (loss_axis, top1_axis, top5_axis):
    axis.set_xlabel("epoch")
    _shade_collapses(axis, plan)
    for _, step in plan.snapshot_steps():
      axis.axvline(step / plan.steps_per_epoch, color="tab:red", ls="--", lw=0.8)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  minutes = (column("time") - rows[0]["time"] + column("epoch_seconds")[0]) / 60
  speed_axis.plot(minutes, column("images_per_second"), "o-", ms=3, color="tab:purple")
  speed_axis.set_xlabel("minutes since the first epoch began")
  speed_axis.set_ylabel("global images/s (inside steps)")
  speed_axis.set_ylim(bottom=0)
  speed_axis.grid(alpha=0.3)
  figure.suptitle("training (shaded: augmentation collapsed; dashed: snapshots)", fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return path


def plot_ensemble(result: dict, path: str, title: str = ""):
  """Bars of every snapshot's top-1 and top-5 and of their ensemble (an eval.json result), and the members'
  pairwise top-1 disagreement."""
  members, ensemble = result["members"], result["ensemble"]
  names = [m["name"] for m in members] + [f"ensemble of {len(members)}"]
  top1 = [100 * m["top1"] for m in members] + [100 * ensemble["top1"]]
  top5 = [100 * m["top5"] for m in members] + [100 * ensemble["top5"]]
  x = np.arange(len(names))
  figure, (axis, heat) = plt.subplots(1, 2, figsize=(max(5, 1.3 * len(names) + 2) + 4.5, 4.5),
                                      width_ratios=(max(5, 1.3 * len(names) + 2), 4.5))
  colors = ["tab:blue"] * len(members) + ["tab:red"]
  axis.bar(x - 0.2, top1, 0.4, color=colors, label="top-1")
  axis.bar(x + 0.2, top5, 0.4, color=colors, alpha=0.45, label="top-5")
  for i, (a, b) in enumerate(zip(top1, top5)):
    axis.annotate(f"{a:.2f}", (i - 0.2, a), ha="center", va="bottom", fontsize=8)
    axis.annotate(f"{b:.2f}", (i + 0.2, b), ha="center", va="bottom", fontsize=8)
  low = min(top1) - max(2.0, 0.3 * (max(top5) - min(top1)))
  axis.set_ylim(max(0.0, low), min(100.0, max(top5) + 2))
  axis.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
  axis.set_ylabel("accuracy %")
  diversity = result["diversity"]
  axis.set_title(f"{title or ' + '.join(result['splits'])}\nensemble {100 * diversity['gain_over_best_member']:+.2f} "
                 f"vs best, {100 * diversity['gain_over_mean_member']:+.2f} vs mean member", fontsize=9)
  axis.legend(fontsize=8)
  axis.grid(axis="y", alpha=0.3)
  disagreement = 100 * np.array(diversity["pairwise_disagreement"], float)
  image = heat.imshow(disagreement, cmap="viridis")
  for (i, j), value in np.ndenumerate(disagreement):
    if i != j:
      heat.annotate(f"{value:.1f}", (j, i), ha="center", va="center", fontsize=8, color="w")
  short = [m["name"] for m in members]
  heat.set_xticks(range(len(short)), short, rotation=30, ha="right", fontsize=7)
  heat.set_yticks(range(len(short)), short, fontsize=7)
  heat.set_title("pairwise top-1 disagreement %", fontsize=9)
  figure.colorbar(image, ax=heat, fraction=0.046)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return path
