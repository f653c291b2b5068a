"""Stream a multipart upload to a staged file in chunks, counting bytes, with a hard size limit."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from service.errors import Problem
from service.sniff import HEAD_BYTES
from service.storage import UploadSink

# Called with the file part's filename when its headers arrive: returns where its bytes go (it may raise a
# Problem, e.g. for an unsupported extension, which ends the request before the body is read).
SinkFactory = Callable[[str], UploadSink]

log = logging.getLogger("loopreg.service")
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 32


@dataclass
class Upload:
    path: Path | None = None  # the staged file, or None when streamed to a sink
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    sink: UploadSink | None = None
    head: bytearray = field(default_factory=bytearray)  # the first HEAD_BYTES bytes, for the header checks

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Receiver:
    """python-multipart callbacks: the file part goes to disk, small fields to memory."""

    def __init__(
        self,
        file_field: str,
        spool_dir: str | None,
        max_bytes: int,
        sink_for: SinkFactory | None = None,
        on_filename: Callable[[str], object] | None = None,
    ):
        self.sink_for, self.on_filename = sink_for, on_filename
        self.file_field = file_field
        self.spool_dir = spool_dir
        self.max_bytes = max_bytes
        self.upload = Upload()
        self._headers: dict[str, str] = {}
        self._hname = b""
        self._hvalue = b""
        self._name: str | None = None
        self._fh: BinaryIO | None = None
        self._buf = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_hname", self._hname + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_hvalue", self._hvalue + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._buf = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._hname.decode("latin1").lower()] = self._hvalue.decode("utf-8", "replace")
        self._hname, self._hvalue = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.upload.path is not None or self.upload.sink is not None:
                raise Problem(422, f"send exactly one '{self.file_field}' file", "invalid-request")
            self.upload.filename = params.get(b"filename", b"").decode("utf-8", "replace")
            if self.on_filename is not None:
                self.on_filename(self.upload.filename)
            if self.sink_for is not None:
                self.upload.sink = self.sink_for(self.upload.filename)
                return
            fd, name = tempfile.mkstemp(prefix="upload-", dir=self.spool_dir)
            self.upload.path = Path(name)
            self._fh = os.fdopen(fd, "wb")
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise Problem(422, "too many form fields", "invalid-request")

    def _file_part(self) -> bool:
        return self._fh is not None or (self.upload.sink is not None and self._name == self.file_field)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file_part():
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                raise Problem(
                    413,
                    f"the scan is larger than the limit of {self.max_bytes // (1024 * 1024)} MiB; "
                    "decimate it or send a binary format (PLY binary, NPY)",
                    "upload-too-large",
                )
            if len(self.upload.head) < HEAD_BYTES:
                self.upload.head += data[start : min(end, start + HEAD_BYTES - len(self.upload.head))]
            if self._fh is not None:
                self._fh.write(data[start:end])
            else:
                self.upload.sink.write(data[start:end])
        else:
            self._buf += data[start:end]
            if len(self._buf) > MAX_FIELD_BYTES:
                raise Problem(422, f"form field '{self._name}' is too long", "invalid-request")

    def _part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._file_part():
            pass
        elif self._name:
            self.upload.fields[self._name] = self._buf.decode("utf-8", "replace")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def storage_call(awaitable):
    """Await a storage operation of an upload; a storage failure is a 503 the client can retry."""
    try:
        return await awaitable
    except Exception as exc:
        log.warning("storage failed during an upload: %s", exc, exc_info=True)
        detail = "the scan store (storage) is unreachable; retry in a few seconds"
        raise Problem(503, detail, "storage-unavailable", headers={"Retry-After": "5"}) from exc


async def receive_upload(
    request: Request,
    file_field: str,
    spool_dir: str | None,
    max_bytes: int,
    sink_for: SinkFactory | None = None,
    on_filename: Callable[[str], object] | None = None,
) -> Upload:
    """Parse multipart/form-data from the request stream; the caller must `discard()` the upload.

    Without `sink_for` the file is staged in `spool_dir`; with it, the bytes go to the sink it returns as
    they arrive (the caller then commits or aborts `upload.sink`; on errors here it is aborted).
    `on_filename` sees the file's name as soon as its part headers arrive (it may raise a Problem).
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise Problem(
            415, f"send multipart/form-data with the scan in a '{file_field}' file field", "not-multipart"
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise Problem(
            413,
            f"the request is larger than the limit of {max_bytes // (1024 * 1024)} MiB",
            "upload-too-large",
        )
    receiver = _Receiver(file_field, spool_dir, max_bytes, sink_for, on_filename)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if receiver.upload.sink is not None:
                await storage_call(receiver.upload.sink.drain())
        parser.finalize()
    except BaseException as exc:  # incl. a client that went away (cancellation)
        receiver.close()
        receiver.upload.discard()
        if receiver.upload.sink is not None:
            with anyio.CancelScope(shield=True):
                await receiver.upload.sink.abort()
        if isinstance(exc, Problem) or not isinstance(exc, Exception):
            raise
        raise Problem(400, f"malformed multipart body: {exc}", "bad-multipart") from exc
    receiver.close()
    if receiver.upload.path is None and receiver.upload.sink is None:
        raise Problem(
            422, f"no '{file_field}' file in the form; send the scan as -F {file_field}=@FILE", "no-scan"
        )
    return receiver.upload
