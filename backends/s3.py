"""``s3://bucket/prefix`` via botocore (the ``s3`` extra: boto3 >= 1.35.69, for conditional writes).

Native mapping, in one place:

- create  -> ``PutObject(IfNoneMatch="*")``; 412 PreconditionFailed = someone else's object.
- update  -> ``PutObject(IfMatch=etag)``; 412 = version moved, 404 NoSuchKey = missing.
- delete  -> ``DeleteObject(IfMatch=etag)`` when a version is given.
- 409 ConditionalRequestConflict is "a concurrent conditional write is in flight, retry":
  it becomes ``TransientError`` (outcome unknown), never "someone else won".

botocore's own retries are switched off (``total_max_attempts=1``): a conditional PUT that
botocore silently retried could come back 412 although its first attempt succeeded. All
retrying and read-back happens once, in ``passivepaxos.store.Store``.

ETags are content MD5s, so two writes of identical bytes share one; every passivepaxos
frame carries a fresh write id, which keeps versions unique per write.

Timeouts: ``PASSIVEPAXOS_CONNECT_TIMEOUT`` / ``PASSIVEPAXOS_READ_TIMEOUT`` (5 / 30 s) are the
client's; under a deadline (``passivepaxos.deadline``) each request's read timeout is cut to
the time left, through botocore's per-request ``read_timeout`` override (boto/botocore#3770;
a botocore without it ignores the override, and the configured read timeout then applies
to the one attempt in flight). The connect timeout cannot be set per request: a
connection opened just before the deadline may take up to the connect timeout.

A bucket name is checked when the URL is parsed (``passivepaxos.urls``); what botocore
still refuses (``ParamValidationError``) is a ``ConfigError``, never retried as transient.

``?conditional=off`` declares an S3-compatible store without conditional PUT (B2, older
MinIO/Ceph): it runs in blocks mode only, and conditional requests are refused here rather
than silently sent as unconditional ones.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator
from typing import Any

import botocore
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    InvalidConfigError,
    InvalidEndpointConfigurationError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    UnknownCredentialError,
)

from passivepaxos.capabilities import capabilities_for
from passivepaxos.deadline import env_seconds, request_timeout
from passivepaxos.errors import (
    AlreadyExistsError,
    ConfigError,
    ContainerNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StoreError,
    ThrottledError,
    TransientError,
    UnsupportedError,
)
from passivepaxos.retry import retry_after_seconds
from passivepaxos.types import ObjectMeta, PutKind, PutMode, Version
from passivepaxos.urls import StoreURL

__all__ = ["S3Backend", "open_backend"]

_NAME = "s3"
_THROTTLE = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidToken",
}
_TRANSIENT = {
    "ConditionalRequestConflict",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "OperationAborted",
}


def _raw_timestamp(value: str) -> str:
    return value


# Creating an S3 client costs 0.3-0.5 s of CPU (a botocore session loads its service
# models, resolves credentials); a warm Lambda or a long-lived process opening log after
# log should pay it once. Clients are thread-safe; one per distinct configuration, read
# from the environment each time, so changed credentials or endpoints get a new client.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PASSIVEPAXOS_CONNECT_TIMEOUT",
    "PASSIVEPAXOS_READ_TIMEOUT",
)
_clients: collections.OrderedDict[tuple[str | None, ...], Any] = collections.OrderedDict()
_clients_lock = threading.Lock()


def _clip_read_timeout(context: dict[str, Any], **_: Any) -> None:
    """botocore ``before-call`` hook: this request's read timeout, cut to the deadline."""
    configured = context["client_config"].read_timeout
    clipped = request_timeout(configured)
    if clipped < configured:
        context["read_timeout"] = clipped


# botocore's answers to a configuration it cannot use (raised when the client is made, or
# when credentials are first resolved): the user's to fix, never retried as transient.
_CONFIG_ERRORS = (
    ProfileNotFound,
    PartialCredentialsError,
    InvalidRegionError,
    NoRegionError,
    InvalidConfigError,
    UnknownCredentialError,
    InvalidEndpointConfigurationError,
    ConfigParseError,
    ValueError,
)


def _client() -> Any:
    key = tuple(os.environ.get(name) for name in _CLIENT_ENV)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=env_seconds("PASSIVEPAXOS_CONNECT_TIMEOUT", 5),
        read_timeout=env_seconds("PASSIVEPAXOS_READ_TIMEOUT", 30),
        max_pool_connections=32,
        # our requests are built here from fixed shapes: skip botocore's validation
        parameter_validation=False,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    core = botocore.session.get_session()
    # Timestamps in responses (LastModified) are never used here; botocore parses each
    # one with dateutil, a good part of a GET's client CPU. Keep them as strings.
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_raw_timestamp
    )
    # botocore's client, not boto3's: boto3 adds resources and s3transfer's upload and
    # download helpers (never used here) and its import costs a new process ~40 ms
    client = core.create_client("s3", region_name=region, config=config)
    client.meta.events.register("before-call.s3", _clip_read_timeout)
    with _clients_lock:
        _clients[key] = client
        while len(_clients) > 8:
            _clients.popitem(last=False)
    return client


def _model_has(client: Any, operation: str, *members: str) -> bool:
    """Whether the client's S3 model gives ``operation`` every one of ``members`` (with
    parameter validation off, botocore drops a member it does not know without a word)."""
    known = client.meta.service_model.operation_model(operation).input_shape.members
    return all(m in known for m in members)


def _knows_conditional_writes(client: Any) -> bool:
    """Whether the client's S3 model has PutObject's ``IfNoneMatch`` and ``IfMatch``."""
    return _model_has(client, "PutObject", "IfNoneMatch", "IfMatch")


class S3Backend:
    def __init__(self, bucket: str, prefix: str = "", *, conditional: bool = True) -> None:
        self.bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.capabilities = capabilities_for("s3" if conditional else "s3-compatible")
        self._conditional = conditional
        try:
            self._s3 = _client()
        except (*_CONFIG_ERRORS, BotoCoreError) as exc:
            # making a client sends nothing: whatever fails here is the configuration
            raise ConfigError(
                f"{self.url}: cannot set up the S3 client: {type(exc).__name__}: {exc}"
            ) from exc
        if conditional and not _knows_conditional_writes(self._s3):
            # parameter_validation is off: an unknown IfNoneMatch would be dropped without
            # a word, and every create would be a blind overwrite of a slot
            raise ConfigError(
                f"{self.url}: botocore {botocore.__version__} does not know PutObject's "
                "IfNoneMatch/IfMatch (conditional writes); install boto3 >= 1.35.69, "
                "which brings botocore >= 1.35.69 (pip install 'passivepaxos[s3]')"
            )

    # -- error translation: the one place native errors become ours -------------------------

    def _translate(self, exc: Exception, key: str | None, mode: PutMode | None = None) -> Exception:
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            msg = str(err.get("Message", "")) or code
            if code == "NoSuchBucket":
                return ContainerNotFoundError(
                    f"bucket {self.bucket!r} does not exist", url=self.url
                )
            if code in ("PreconditionFailed",) or status == 412:
                if mode is not None and mode.kind is PutKind.CREATE:
                    return AlreadyExistsError("object already exists", url=self.url, key=key)
                return PreconditionFailedError(
                    "version moved (ETag differs)", url=self.url, key=key
                )
            if code in ("NoSuchKey", "NotFound") or status == 404:
                return NotFoundError("object does not exist", url=self.url, key=key)
            if code in _DENIED or status in (401, 403):
                return PermissionDeniedError(
                    f"permission denied: {code}: {msg}", url=self.url, key=key
                )
            if code in _THROTTLE or status == 429:
                retry_after = (
                    exc.response.get("ResponseMetadata", {})
                    .get("HTTPHeaders", {})
                    .get("retry-after")
                )
                return ThrottledError(
                    f"throttled: {code}",
                    url=self.url,
                    key=key,
                    retry_after=retry_after_seconds(retry_after),
                )
            if code in _TRANSIENT or status >= 500 or status == 409:
                return TransientError(f"{code or status}: {msg}", url=self.url, key=key)
            return StoreError(f"{code or status}: {msg}", url=self.url, key=key)
        if isinstance(exc, NoCredentialsError):
            return ConfigError(
                f"{self.url}: no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)"
            )
        if isinstance(
            exc,
            (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError),
        ):
            return TransientError(f"connection problem: {exc}", url=self.url, key=key)
        if isinstance(exc, _CONFIG_ERRORS):
            return ConfigError(f"{self.url}: S3 configuration: {type(exc).__name__}: {exc}")
        if isinstance(exc, ParamValidationError):  # refused before sending: a bad name
            detail = " ".join(str(exc).split()).removeprefix("Parameter validation failed: ")
            return ConfigError(f"{self.url}: not a valid S3 request: {detail}")
        if isinstance(exc, BotoCoreError):
            return TransientError(f"{type(exc).__name__}: {exc}", url=self.url, key=key)
        return exc

    def _call(self, fn: Any, key: str | None, mode: PutMode | None = None, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key, mode) from exc

    def _require_conditional(self, what: str) -> None:
        if not self._conditional:
            raise UnsupportedError(
                f"{self.url}: {what} is not available on this S3-compatible store "
                "(conditional=off); use blocks mode",
                capability=what,
            )

    # -- Backend ---------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, Version] | None:
        try:
            resp = self._call(self._s3.get_object, key, Bucket=self.bucket, Key=self._prefix + key)
        except NotFoundError:
            return None
        try:
            body = resp["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise TransientError(f"reading body failed: {exc}", url=self.url, key=key) from exc
        return body, Version(_NAME, resp["ETag"])

    def put(self, key: str, data: bytes, mode: PutMode) -> Version:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._prefix + key, "Body": data}
        if mode.kind is PutKind.CREATE:
            self._require_conditional("create-if-absent")
            kwargs["IfNoneMatch"] = "*"
        elif mode.kind is PutKind.UPDATE:
            self._require_conditional("compare-and-swap")
            assert mode.version is not None
            kwargs["IfMatch"] = self._etag(mode.version)
        resp = self._call(self._s3.put_object, key, mode, **kwargs)
        return Version(_NAME, resp["ETag"])

    def _etag(self, version: Version) -> str:
        if version.backend != _NAME:
            raise ConfigError(f"{self.url}: version {version} was not issued by an s3 store")
        return version.token

    def delete(self, key: str, if_version: Version | None = None) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._prefix + key}
        if if_version is not None:
            self._require_conditional("delete-if-version")
            if not _model_has(self._s3, "DeleteObject", "IfMatch"):
                # an older botocore would send the delete unconditionally
                raise UnsupportedError(
                    f"{self.url}: botocore {botocore.__version__} does not know "
                    "DeleteObject's IfMatch (conditional delete); upgrade boto3",
                    capability="delete-if-version",
                )
            kwargs["IfMatch"] = self._etag(if_version)
        try:
            self._call(
                self._s3.delete_object,
                key,
                PutMode.update(if_version) if if_version else None,
                **kwargs,
            )
        except NotFoundError:
            if if_version is not None:
                raise

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectMeta]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._prefix + prefix}
        if start_after is not None:
            kwargs["StartAfter"] = self._prefix + start_after
        while True:
            resp = self._call(self._s3.list_objects_v2, None, **kwargs)
            for item in resp.get("Contents", []):
                yield ObjectMeta(
                    item["Key"][len(self._prefix) :],
                    Version(_NAME, item["ETag"]),
                    int(item["Size"]),
                )
            if not resp.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]
            kwargs.pop("StartAfter", None)

    def close(self) -> None:
        """Nothing to release: the client is shared by this process's S3 stores."""


def open_backend(url: StoreURL) -> S3Backend:
    flag = url.options.get("conditional", "on").lower()
    if flag not in ("on", "off", "true", "false", "1", "0"):
        raise ConfigError(f"{url.raw}: conditional= takes on or off, not {flag!r}")
    return S3Backend(url.container, url.prefix, conditional=flag in ("on", "true", "1"))
