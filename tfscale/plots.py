"""PNG pictures of a run, written by rank 0 into the workdir (matplotlib's Agg backend; no display, no TF).

  plan.png         learning rate and weight decay against epoch, collapse phases shaded, snapshots marked
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
  for name, step in plan.snapshot_steps():
    lr_axis.axvline(step / plan.steps_per_epoch, color="tab:red", ls="--", lw=0.9)
    lr_axis.annotate(name, (step / plan.steps_per_epoch, plan.lr.max()), rotation=90, va="top", ha="right",
                     fontsize=8, color="tab:red")
  for i, phase in enumerate(plan.phases):
    lr_axis.annotate(phase["name"], (plan.boundaries[i] / plan.steps_per_epoch, 0), fontsize=7, rotation=90,
                     va="bottom", ha="left", color="0.35")
  lr_axis.set_title(title or f"phase plan: {plan.total_steps} steps, {plan.steps_per_epoch} steps/epoch "
                    "(shaded: augmentation collapsed; dashed: snapshots)", fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path
