"""Object storage shared by API and workers: a local directory or an S3 bucket."""

from __future__ import annotations

import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread

from service.settings import Settings

CHUNK = 1024 * 1024
MIN_PART = 5 * 1024 * 1024  # S3's smallest part (all but the last)
log = logging.getLogger("loopreg.service")


class NotStored(KeyError):
    """The key does not exist in storage."""


class Storage(ABC):
    """Keys are '/'-separated relative paths such as 'jobs/<id>/out/body.obj'."""

    streams_uploads = False  # True: the API streams uploads through open_upload() instead of staging them

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def ping(self) -> None: ...

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_bytes(key))

    def adopt_file(self, key: str, path: Path) -> None:
        """Store a staged file that the caller no longer needs (it may be moved instead of copied)."""
        self.put_file(key, path)

    def open_upload(self, key: str) -> UploadSink | None:
        """A sink that streams an upload straight to `key`, or None: the API stages it in a file first."""
        return None


class UploadSink(ABC):
    """Takes an upload's bytes in order while it arrives; nothing is visible under the key before commit().

    write() only buffers (it is called from the multipart parser); drain() does the blocking I/O in a
    thread so the event loop keeps serving other requests.
    """

    size: int = 0

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def drain(self) -> None: ...

    @abstractmethod
    async def commit(self) -> None: ...

    @abstractmethod
    async def abort(self) -> None: ...


class S3UploadSink(UploadSink):
    """S3 multipart upload, one part per `part_size` bytes (memory: about one part per upload in flight).

    A scan smaller than one part becomes a single PUT at commit(); abort() removes the parts already sent.
    """

    def __init__(self, client, bucket: str, key: str, part_size: int):
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = max(int(part_size), MIN_PART)
        self.buf = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buf += data
        self.size += len(data)

    async def drain(self) -> None:
        while len(self.buf) >= self.part_size:
            part = bytes(self.buf[: self.part_size])
            del self.buf[: self.part_size]
            await anyio.to_thread.run_sync(self._put_part, part)

    def _put_part(self, data: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, PartNumber=number, UploadId=self.upload_id, Body=data
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def commit(self) -> None:
        rest = bytes(self.buf)
        self.buf = bytearray()

        def finish() -> None:
            if self.upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=rest)
                return
            if rest:
                self._put_part(rest)
            parts = {"Parts": self.parts}
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload=parts
            )

        await anyio.to_thread.run_sync(finish)

    async def abort(self) -> None:
        self.buf = bytearray()
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        try:
            await anyio.to_thread.run_sync(
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id
                )
            )
        except Exception:  # a bucket lifecycle rule (AbortIncompleteMultipartUpload) cleans up the rest
            log.warning("could not abort the multipart upload of %s", self.key, exc_info=True)


class LocalStorage(Storage):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotStored(key)
        return path

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def adopt_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(path, 0o644)  # staged files are private (mkstemp); stored ones are read by workers
            os.replace(path, dest)  # same filesystem: no second write of the scan
        except OSError:  # another filesystem (EXDEV) or no permission: copy
            self.put_file(key, path)

    def get_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotStored(key)
        shutil.copyfile(src, path)

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        src = self._path(key)
        if not src.is_file():
            raise NotStored(key)
        fh = src.open("rb")

        def chunks() -> Iterator[bytes]:
            with fh:
                while block := fh.read(chunk_size):
                    yield block

        return chunks()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base, ignore_errors=True)
        return count

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"storage directory {self.root} is not writable")


class S3Storage(Storage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = 8 * 1024 * 1024,
    ):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    streams_uploads = True

    def open_upload(self, key: str) -> UploadSink:
        return S3UploadSink(self.client, self.bucket, self._key(key), self.part_size)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))  # multipart, in chunks

    def get_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as exc:
            if _missing(exc):
                raise NotStored(key) from exc
            raise

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise NotStored(key) from exc
            raise
        return body.iter_chunks(chunk_size)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if _missing(exc):
                return False
            raise

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                count += len(keys)
        return count

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def make_storage(settings: Settings) -> Storage:
    """LOOPREG_STORAGE: a directory path, or s3://bucket[/prefix]."""
    if settings.storage.startswith("s3://"):
        bucket, _, prefix = settings.storage[len("s3://") :].partition("/")
        part = int(settings.s3_part_mb * 1024 * 1024)
        return S3Storage(bucket, prefix, settings.s3_endpoint_url, settings.s3_region, part)
    return LocalStorage(settings.storage)


def scan_key(job_id: str, ext: str) -> str:
    return f"jobs/{job_id}/scan.{ext}"


def output_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/out/{name}"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"
