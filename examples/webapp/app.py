"""A web app whose workers share one circuit breaker for their upstream.

    gunicorn --preload -w 2 app:app

Configuration, from the environment:

- PAYMENTS_URL: the upstream (default http://127.0.0.1:8081); its health check is
  PAYMENTS_URL/healthz.
- REDIS_URL: the Redis the workers share decisions through.
- RECOVERY_NAMESPACE: one per service (default "shop").
- RECOVERY_SECRET: signs what the workers tell each other (required).
"""

import json
import logging
import os
import sys
import urllib.request

import recovery
from recovery.cluster import Cluster

# gunicorn sets up only its own logger: without this line the library's warnings
# (breaker opened, dependency down, Redis unreachable) go nowhere.
logging.basicConfig(level=logging.INFO, format="[%(process)d] %(levelname)s %(name)s: %(message)s")

PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8081")

cluster = Cluster(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    namespace=os.environ.get("RECOVERY_NAMESPACE", "shop"),
    secret=os.environ.get("RECOVERY_SECRET") or sys.exit(
        "app: set RECOVERY_SECRET, the secret the workers sign their messages with"),
)
rm = recovery.RecoveryManager(cluster=cluster)
rm.register_dependency(
    "payments",
    health_check=f"{PAYMENTS_URL}/healthz",
    fallback=lambda: {"status": "queued", "served_by": "fallback"},
)


def pay():
    # Always bound a call to an upstream: a hanging one must fail, not hold a worker.
    with urllib.request.urlopen(f"{PAYMENTS_URL}/pay", timeout=2) as response:
        return json.load(response)


def app(environ, start_response):
    try:
        answer, status = rm.call("payments", pay), "200 OK"
    except OSError as error:  # the call failed (HTTP error, refused, timed out): counted
        answer, status = {"error": str(error)}, "502 Bad Gateway"
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


cluster.start()
rm.start()
