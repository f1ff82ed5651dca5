"""``sciml-diffusion design``: where to put the next sensors, given a sensor file and a prior.

Reads the sensors placed (a file from ``observe``, with their readings), samples the
posterior with the prior (MMPS), and proposes ``--add`` new sensors by the chosen
criterion (:func:`~sciml_diffusion.inverse.design.suggest_sensors`). The output is a sensor
file with NaN readings to fill in (the variable to read, and the criterion per pick, in
its attributes); ``--plot`` draws the criterion over the candidates with the old and new
sensors. Every path and argument is checked before the prior is loaded.
"""

from __future__ import annotations

import argparse

from sciml_diffusion.cli.checks import (
    check_device,
    check_input_file,
    check_output_file,
    check_plot_path,
    positive_int,
)

__all__ = ["register", "CRITERION_NAMES"]

#: the criteria of sciml_diffusion.inverse.design (kept here so that --help needs no torch)
CRITERION_NAMES = ("eig", "greedy", "variance", "random")


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``design`` command."""
    design = groups.add_parser(
        "design", help="propose where to put the next sensors (Bayesian experimental design)"
    )
    design.add_argument("--checkpoint", required=True, help="run directory of a trained prior")
    design.add_argument("--observations", required=True, help="sensor file of placed sensors")
    design.add_argument("--add", type=positive_int, required=True, help="sensors to add")
    design.add_argument("--out", required=True, help="new sensor file (.nc)")
    design.add_argument("--criterion", default="eig", choices=CRITERION_NAMES, help="how to pick")
    design.add_argument(
        "--estimator", default="gaussian", choices=("gaussian", "pce"), help="EIG per reading"
    )
    design.add_argument(
        "--candidates", default=None, help="sensor file of admissible positions (all nodes)"
    )
    design.add_argument(
        "--exclude-boundary", action="store_true", help="no candidates on non-periodic edges"
    )
    design.add_argument("--members", type=positive_int, default=32, help="posterior ensemble")
    design.add_argument(
        "--batch-size", type=positive_int, default=None, help="members per batch (default all)"
    )
    design.add_argument("--steps", type=positive_int, default=None, help="sampler steps")
    design.add_argument("--method", default="mmps", help="posterior sampler: mmps, dps, ...")
    design.add_argument(
        "--noise-std", default=None, help="sensor noise std: 1e-3, or per variable u=1e-5,a=0.1"
    )
    design.add_argument("--seed", type=int, default=0)
    design.add_argument("--device", default="cpu")
    design.add_argument("--plot", default=None, help="PNG map of the criterion and the picks")
    design.add_argument("--overwrite", action="store_true")
    design.add_argument("--quiet", action="store_true", help="no progress bars")
    design.set_defaults(func=_design)


def _design(args: argparse.Namespace) -> None:
    from sciml_diffusion import distributed

    with distributed.session(check_device(args.device)) as ctx:
        _design_sharded(args, ctx)


def _design_outputs(args: argparse.Namespace):
    from sciml_diffusion.cli.inverse import _noise_std

    inputs = [args.observations, args.candidates]
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    plot = check_plot_path(args.plot, overwrite=args.overwrite, inputs=inputs)
    if plot is not None and plot.resolve() == out.resolve():
        raise ValueError("--plot and --out are the same file; give two paths")
    check_input_file(args.observations, "--observations")
    if args.candidates:
        check_input_file(args.candidates, "--candidates")
    return out, plot, _noise_std(args.noise_std)


def _design_sharded(args: argparse.Namespace, ctx) -> None:
    """``design`` on every rank: the posterior members split by rank; rank 0 selects, writes."""
    from sciml_diffusion import distributed

    out, plot, noise = distributed.run_on_main(_design_outputs, args)

    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.fields import Observations, open_dataset
    from sciml_diffusion.fields.io import save_dataset
    from sciml_diffusion.inverse.design import interior_mask, plot_design, suggest_sensors

    obs = Observations.from_xarray(open_dataset(args.observations))
    prior = Prior.load(args.checkpoint, device=ctx.device)
    candidates = None
    if args.candidates:
        candidates = Observations.from_xarray(open_dataset(args.candidates))
    elif args.exclude_boundary:
        candidates = interior_mask(prior.grid)
    options = {"steps": args.steps} if args.steps else {}
    proposed = suggest_sensors(
        prior,
        obs,
        args.add,
        args.criterion,
        candidates,
        args.members,
        args.seed,
        estimator=args.estimator,
        noise_std=noise,
        method=args.method,
        device=ctx.device,
        progress=not args.quiet and ctx.is_main,
        sharded=True,
        batch_size=args.batch_size,
        **options,
    )
    if proposed is None:  # not rank 0: its members went to rank 0
        return
    ds = proposed.to_xarray()
    ds.attrs.update(
        checkpoint=str(args.checkpoint),
        observations=str(args.observations),
        seed=args.seed,
        members=args.members,
        ranks=ctx.world_size,
    )
    save_dataset(ds, out)
    if plot is not None:
        plot_design(proposed, obs, path=plot)
    _report(proposed, out)


def _report(proposed, out) -> None:
    for i, (where, name, value) in enumerate(
        zip(proposed.coords, proposed.variable, proposed.value.tolist()), start=1
    ):
        place = ", ".join(f"{a}={c:.4g}" for a, c in zip(proposed.axes, where))
        print(f"{i:3d}. {place}  read {name}  {proposed.criterion} {value:.4g}")
    gains = ", ".join(f"{k} {v:.3g} ± {e:.2g}" for k, (v, e) in proposed.eig.items())
    tail = f"; batch EIG (nats): {gains}" if gains else ""
    print(f"wrote {len(proposed)} proposed sensors to {out}{tail}")
