"""CLI: `python -m ttelgo.sandbox.esimgo_sim --host 127.0.0.1 --port 8090` (options override ESIMGO_SIM_*)."""

import argparse
import logging
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .config import SimConfig
from .faults import FaultSettings
from .guard import API_PREFIX

logger = logging.getLogger("ttelgo.sandbox.esimgo_sim")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ttelgo.sandbox.esimgo_sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--api-key", help="expected X-API-Key [ESIMGO_SIM_API_KEY]")
    p.add_argument("--callback-url", help="usage callback target [ESIMGO_SIM_CALLBACK_URL]")
    p.add_argument("--rate-limit", type=int, help="requests/s per key, 0 disables [ESIMGO_SIM_RATE_LIMIT]")
    p.add_argument("--balance", help="initial organisation balance in USD [ESIMGO_SIM_BALANCE]")
    p.add_argument("--faults", help="fault settings as JSON [ESIMGO_SIM_FAULTS]")
    p.add_argument("--seed", type=int, help="catalogue/identifier seed [ESIMGO_SIM_SEED]")
    p.add_argument(
        "--state-dir",
        help="folder kept across starts, so identifiers never repeat between them [ESIMGO_SIM_STATE_DIR]",
    )
    p.add_argument("--async-threshold", type=int, help="orders of more bundles complete asynchronously")
    p.add_argument("--async-delay", type=float, help="seconds before an async order completes")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> SimConfig:
    return SimConfig.from_env(
        api_key=args.api_key,
        callback_url=args.callback_url,
        rate_limit_per_second=args.rate_limit,
        initial_balance=args.balance,
        faults=FaultSettings.model_validate_json(args.faults) if args.faults else None,
        seed=args.seed,
        state_dir=args.state_dir,
        async_order_threshold=args.async_threshold,
        async_completion_delay_s=args.async_delay,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(build_config(args))
    host = f"[{args.host}]" if ":" in args.host else args.host
    logger.info("eSIM Go simulator at http://%s:%d%s (admin: /_sim)", host, args.port, API_PREFIX)
    if app.state.sim.generation is not None:
        logger.info(
            "identifier generation %d (state in %s)", app.state.sim.generation, app.state.sim.config.state_dir
        )
    # uvicorn's own access/startup logs stay at warning so our line is the one that says where we are.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
