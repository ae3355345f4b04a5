"""Runs Datadog's APM test agent (ddapm-test-agent) bound to 127.0.0.1 only (its own command
binds every interface), with every trace check of the installed version enabled unless
ENABLED_CHECKS says otherwise. Used by sinks.DDAgent: `ddagent_main.py --port N [agent options]`.
The enabled list is written to ./enabled_checks (the agent runs in a scratch directory)."""
import os
import sys

from aiohttp import web
from ddapm_test_agent import agent, trace_checks
from ddapm_test_agent.checks import Check

if not os.environ.get("ENABLED_CHECKS"):
    names = sorted({c.name for c in vars(trace_checks).values()
                    if isinstance(c, type) and issubclass(c, Check) and c is not Check})
    os.environ["ENABLED_CHECKS"] = ",".join(names)
with open("enabled_checks", "w") as f:
    f.write(os.environ["ENABLED_CHECKS"])

_run_app = web.run_app


def run_app(app, **kwargs):
    if kwargs.get("sock") is None:
        kwargs.pop("sock", None)
        kwargs["host"] = "127.0.0.1"
    return _run_app(app, **kwargs)


web.run_app = run_app
agent.main(sys.argv[1:])
