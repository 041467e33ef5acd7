"""A botocore client plugin that records every AWS API call the clients of this process make.

botocore loads it into each client it creates when BOTOCORE_EXPERIMENTAL__PLUGINS names it
(`iam=tests.support.iam_recorder`); it registers on the client's own event system, so the real
client calls the real server as always, and the test reads CALLS afterwards.
"""

from __future__ import annotations

CALLS: list[tuple[str, str, str]] = []  # (service, operation, queue URL or name, or stream)
PLUGIN = "iam=tests.support.iam_recorder"


def initialize_client_plugin(client) -> None:
    service = client.meta.service_model.service_name
    client.meta.events.register(f"before-parameter-build.{service}", _record)


def _record(params: dict, model, **kwargs) -> None:
    resource = params.get("QueueUrl") or params.get("QueueName") or params.get("StreamName")
    resource = resource or (params.get("StreamARN") or "").rpartition("/")[2]
    CALLS.append((model.service_model.service_name, model.name, resource))
