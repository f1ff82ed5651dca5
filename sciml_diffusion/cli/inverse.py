"""``sciml-diffusion observe`` and ``sciml-diffusion reconstruct``: make a sensor file from a
data set, and turn a sensor file into a posterior ensemble with a trained prior."""

from __future__ import annotations

import argparse

from sciml_diffusion.cli.checks import (
    add_speed_flags,
    check_device,
    check_input_file,
    check_output_file,
    check_plot_path,
    fraction,
    nonnegative_float,
    nonnegative_int,
    parse_variables,
    positive_int,
)

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``observe`` and ``reconstruct`` commands."""
    observe = groups.add_parser("observe", help="draw point sensors from a field data set")
    observe.add_argument("--data", required=True, help="field data set (.nc, .h5, .zarr)")
    observe.add_argument("--index", type=nonnegative_int, default=0, help="sample observed")
    count = observe.add_mutually_exclusive_group(required=True)
    count.add_argument("--fraction", type=fraction, help="fraction of the nodes, per variable")
    count.add_argument("--count", type=positive_int, help="number of nodes, per variable")
    observe.add_argument("--variables", default=None, help="observed, comma-separated (all)")
    observe.add_argument(
        "--noise-std", type=nonnegative_float, default=0.0, help="added noise std"
    )
    observe.add_argument(
        "--exclude-boundary", action="store_true", help="no sensors on Dirichlet boundaries"
    )
    observe.add_argument("--seed", type=int, default=0)
    observe.add_argument("--out", required=True, help="sensor file (.nc)")
    observe.add_argument("--overwrite", action="store_true")
    observe.set_defaults(func=_observe)

    rec = groups.add_parser("reconstruct", help="posterior ensemble from a sensor file")
    rec.add_argument("--checkpoint", required=True, help="run directory of a trained prior")
    rec.add_argument("--observations", required=True, help="sensor file from `observe`")
    rec.add_argument("--method", default="mmps", help="mmps, dps, fundps, diffusionpde")
    rec.add_argument("--members", type=positive_int, default=16)
    rec.add_argument(
        "--steps", type=positive_int, default=None, help="sampler steps (method default)"
    )
    rec.add_argument("--sampler", default=None, help="euler, heun, dpm2m, stochastic, em")
    rec.add_argument(
        "--noise-std", default=None, help="sensor noise std: 1e-3, or per variable u=1e-5,a=0.1"
    )
    rec.add_argument("--pde", default=None, help="PDE residual guidance, e.g. darcy")
    rec.add_argument("--resolution", type=positive_int, default=None, help="output nodes per axis")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--device", default="cpu")
    rec.add_argument("--batch-size", type=positive_int, default=None, help="members per batch")
    rec.add_argument("--out", required=True, help="posterior ensemble (.nc)")
    rec.add_argument("--overwrite", action="store_true")
    rec.add_argument("--plot", default=None, help="optional PNG of mean, std and sensors")
    rec.add_argument("--quiet", action="store_true", help="no progress bars")
    add_speed_flags(rec, default=False)
    rec.set_defaults(func=_reconstruct)


def _observe(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields import FieldDataset, Observations
    from sciml_diffusion.fields.io import save_dataset

    data_file = check_input_file(args.data)
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=[data_file])
    data = FieldDataset.open(data_file)
    variables = parse_variables(args.variables)
    if variables:
        unknown = [v for v in variables if v not in data.variables]
        if unknown:
            raise ValueError(f"{args.data} has no variable(s) {unknown}; it has {data.variables}")
    obs = Observations.per_variable(
        data,
        index=args.index,
        count=args.count,
        fraction=args.fraction,
        variables=variables,
        exclude_boundary=args.exclude_boundary,
        seed=args.seed,
        noise_std=args.noise_std,
    )
    ds = obs.to_xarray()
    ds.attrs.update(source=str(args.data), index=args.index, seed=args.seed)
    save_dataset(ds, out)
    per = {v: int((~obs.values[:, k].isnan()).sum()) for k, v in enumerate(obs.variables)}
    print(f"wrote {len(obs)} sensors ({per}) to {out}")


def _noise_std(text: str | None):
    """``None``, a float, or a mapping from ``u=1e-5,a=0.1``."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = (item.split("=") for item in text.split(","))
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError as error:
        raise ValueError(
            f"--noise-std {text!r}: give a number or name=value pairs, e.g. u=1e-5,a=0.1"
        ) from error


def _reconstruct(args: argparse.Namespace) -> None:
    from sciml_diffusion import distributed

    with distributed.session(check_device(args.device)) as ctx:
        _reconstruct_sharded(args, ctx)


def _reconstruct_outputs(args: argparse.Namespace):
    sensors = check_input_file(args.observations, "--observations")
    inputs = [sensors, args.checkpoint]
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    check_plot_path(args.plot, overwrite=args.overwrite, inputs=inputs)
    return sensors, out, _noise_std(args.noise_std)


def _reconstruct_sharded(args: argparse.Namespace, ctx) -> None:
    """``reconstruct`` on every rank: members split by rank, gathered and written on rank 0."""
    from sciml_diffusion import distributed
    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.fields import Observations, open_dataset
    from sciml_diffusion.fields.io import save_dataset
    from sciml_diffusion.inverse import reconstruct
    from sciml_diffusion.inverse.report import plot_reconstruction

    sensors, out, noise_std = distributed.run_on_main(_reconstruct_outputs, args)
    obs = Observations.from_xarray(open_dataset(sensors))
    prior = Prior.load(args.checkpoint, device=ctx.device, compile=args.compile)
    grid = prior.grid.with_shape(args.resolution) if args.resolution else None
    ds = reconstruct(
        prior,
        obs,
        method=args.method,
        pde=args.pde,
        members=args.members,
        steps=args.steps,
        grid=grid,
        generator=args.seed,
        device=ctx.device,
        sampler=args.sampler,
        noise_std=noise_std,
        batch_size=args.batch_size,
        progress=not args.quiet and ctx.is_main,
        bf16=args.bf16,
        sharded=True,
    )
    if ds is None:  # not rank 0: its members went to rank 0
        return
    ds.attrs.update(
        checkpoint=str(args.checkpoint), observations=str(args.observations), ranks=ctx.world_size
    )
    save_dataset(ds, out)
    if args.plot:
        plot_reconstruction(ds, path=args.plot)
    print(
        f"wrote {args.members} members ({args.method}, {ds.attrs['steps']} steps, "
        f"{ds.attrs['nfe']} NFE, {ds.attrs['seconds']:.1f} s) to {out}"
    )
