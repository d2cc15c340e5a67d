"""Where uploaded files live: one interface, two places.

- Local files under the instance folder (the default): `STORAGE_URL` unset, or `file:///path`.
- S3-compatible object storage: `STORAGE_URL=s3://bucket/prefix` (boto3; credentials from the
  usual AWS variables or instance role; `STORAGE_ENDPOINT_URL` or `AWS_ENDPOINT_URL` for
  another S3-compatible service).

Nothing here decides who may see a file: callers check access first (portal/photos.py), then
ask `serve` for the response. Locally that response is the bytes; on S3 it is a redirect to a
presigned URL that works for `STORAGE_URL_SECONDS`, so objects stay private in the bucket.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, redirect
from werkzeug.wrappers import Response as BaseResponse

from portal.config import ConfigError
from portal.files import write_atomically

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Keys are made by the portal (portal/photos.py): a path of plain segments, never `..`.
CONTENT_TYPE_PROBE = "image/jpeg"
KEY = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_.-]*)*")


class StorageError(RuntimeError):
    """The storage could not keep or give back a file."""


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def serve(self, key: str, content_type: str) -> BaseResponse: ...

    def origin(self) -> str | None:
        """Where browsers fetch the files from when it is not this site (the pages' CSP
        img-src must allow it), else None."""
        ...


def _checked(key: str) -> str:
    if not KEY.fullmatch(key) or ".." in key:
        raise StorageError(f"not a storage key: {key!r}")
    return key


def private_headers(response: Response, content_type: str) -> Response:
    """What every served upload carries: its type as stored (never sniffed), kept by the
    browser only (the page is someone's home), shown inline."""
    response.headers["Content-Type"] = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, max-age=300"
    response.headers["Content-Disposition"] = "inline"
    return response


@dataclass(frozen=True)
class LocalStorage:
    root: Path

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as error:
            raise StorageError(f"no file for {key}") from error

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def serve(self, key: str, content_type: str) -> Response:
        return private_headers(Response(self.get(key)), content_type)

    def origin(self) -> str | None:
        return None


@dataclass(frozen=True)
class S3Storage:
    client: S3Client
    bucket: str
    prefix: str
    url_seconds: int

    def _key(self, key: str) -> str:
        return f"{self.prefix}{_checked(key)}"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        # No ACL: the bucket's default (private). Readers get presigned URLs only.
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            CacheControl="private, max-age=300",
        )

    def get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.client.exceptions.NoSuchKey as error:
            raise StorageError(f"no object for {key}") from error
        return body.read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, content_type: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentType": content_type,
                "ResponseCacheControl": "private, max-age=300",
            },
            ExpiresIn=self.url_seconds,
        )

    def origin(self) -> str | None:
        # Signing needs no network: the origin a presigned URL points at, whatever the
        # addressing style and region make of it.
        try:
            url = self.presigned_url("origin-probe", CONTENT_TYPE_PROBE)
        except Exception:  # no credentials yet (an instance role appears later): any S3 host
            return "https://*.amazonaws.com"
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def serve(self, key: str, content_type: str) -> BaseResponse:
        response = redirect(self.presigned_url(key, content_type), code=302)
        # The redirect carries a short-lived signature: nobody keeps it.
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def from_config(config: dict[str, object], instance_path: str) -> Storage:
    """The storage `STORAGE_URL` names (the instance folder's uploads when it is empty)."""
    url = str(config.get("STORAGE_URL") or "")
    if not url:
        return LocalStorage(Path(str(config["UPLOAD_DIR"])))
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(parts.path or instance_path))
    if parts.scheme == "s3" and parts.netloc:
        import boto3
        from botocore.config import Config

        endpoint = str(config.get("STORAGE_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or "") or None
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=str(config.get("STORAGE_REGION") or "") or None,
            config=Config(
                signature_version="s3v4",
                # Most S3-compatible services (MinIO, Ceph) serve buckets by path.
                s3={"addressing_style": "path" if endpoint else "auto"},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        prefix = parts.path.strip("/")
        return S3Storage(
            client, parts.netloc, f"{prefix}/" if prefix else "", int(str(config["STORAGE_URL_SECONDS"]))
        )
    raise ConfigError(f"STORAGE_URL must be empty, file:///path or s3://bucket/prefix, got {url!r}")


def init_app(app: Flask) -> None:
    storage = from_config(app.config, app.instance_path)
    app.extensions["storage"] = storage
    # Read by the Content-Security-Policy (portal/web.py): S3 photos load from there.
    app.config["STORAGE_IMAGE_ORIGIN"] = storage.origin()


def get_storage() -> Storage:
    storage: Storage = current_app.extensions["storage"]
    return storage
